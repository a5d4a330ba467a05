//! The process's panic hook. One known panic of a dependency is logged as a warning instead of
//! a backtrace: object_store's upload writer panics ("Already shut down") when it is aborted
//! after its completion failed, which deltalake does in a detached clean-up task after a
//! Parquet upload failed (a full disk, a reset connection). Nothing is lost with it — the
//! upload's failure is already the task's error — but a backtrace on the terminal reads like a
//! crash. Every other panic goes to the default hook.

/// Installs the hook (once, at start).
pub fn install() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("");
        let file = info.location().map(|l| l.file()).unwrap_or("");
        if is_abort_after_failed_upload(message, file) {
            tracing::warn!(
                "the clean-up of a failed Parquet upload could not abort it (object_store: \"{message}\"); the upload's failure is the task's error"
            );
            return;
        }
        default(info);
    }));
}

/// Is this object_store's `BufWriter::abort` after a failed completion?
fn is_abort_after_failed_upload(message: &str, file: &str) -> bool {
    message == "Already shut down" && file.contains("object_store") && file.ends_with("buffered.rs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_abort_after_a_failed_upload_is_quieted() {
        let file = "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/object_store-0.13.2/src/buffered.rs";
        assert!(is_abort_after_failed_upload("Already shut down", file));
        assert!(!is_abort_after_failed_upload("index out of bounds", file));
        assert!(!is_abort_after_failed_upload(
            "Already shut down",
            "src/layers/serving/mod.rs"
        ));
    }
}
