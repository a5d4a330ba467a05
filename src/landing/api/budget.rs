//! The process-wide byte budget of requests in flight (`[ingest] max_inflight_bytes`): a
//! request reserves KiB as its body arrives and decodes, never waiting — when the budget is
//! spent it is refused ([`Error::Busy`], 503) — and gives them back once answered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::{Error, Result};

/// Bytes reserved by all requests of this process (the `lakepipe_ingest_inflight_bytes` gauge).
static INFLIGHT_BYTES: AtomicU64 = AtomicU64::new(0);

/// Bytes currently reserved by requests in flight, across every [`Budget`] of the process.
pub fn inflight_bytes() -> u64 {
    INFLIGHT_BYTES.load(Ordering::Relaxed)
}

/// The budget: a semaphore of KiB permits.
#[derive(Debug, Clone)]
pub struct Budget {
    sem: Arc<Semaphore>,
    limit: u64,
}

impl Budget {
    /// A budget of `limit` bytes (rounded down to KiB, at least one).
    pub fn new(limit: u64) -> Budget {
        let kib = usize::try_from((limit / 1024).max(1)).unwrap_or(usize::MAX >> 4);
        Budget {
            sem: Arc::new(Semaphore::new(kib.min(Semaphore::MAX_PERMITS))),
            limit,
        }
    }

    /// An empty reservation against this budget.
    pub fn reservation(&self) -> Reservation {
        Reservation {
            budget: self.clone(),
            permit: None,
            kib: 0,
        }
    }
}

/// What one request holds of the [`Budget`]; given back on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Budget,
    permit: Option<OwnedSemaphorePermit>,
    kib: u32,
}

impl Reservation {
    /// Holds at least `bytes` in total; [`Error::Busy`] if the budget has not that much left.
    pub fn grow_to(&mut self, bytes: u64) -> Result<()> {
        let want = u32::try_from(bytes.div_ceil(1024)).map_err(|_| Error::Busy {
            limit: self.budget.limit,
        })?;
        if want <= self.kib {
            return Ok(());
        }
        let extra = want - self.kib;
        let more = Arc::clone(&self.budget.sem)
            .try_acquire_many_owned(extra)
            .map_err(|_| Error::Busy {
                limit: self.budget.limit,
            })?;
        match &mut self.permit {
            Some(p) => p.merge(more),
            None => self.permit = Some(more),
        }
        self.kib = want;
        INFLIGHT_BYTES.fetch_add(u64::from(extra) * 1024, Ordering::Relaxed);
        Ok(())
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        u64::from(self.kib) * 1024
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        INFLIGHT_BYTES.fetch_sub(self.bytes(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_the_budget_and_give_it_back() {
        let b = Budget::new(4096);
        let mut a = b.reservation();
        a.grow_to(1).unwrap();
        a.grow_to(3000).unwrap();
        assert_eq!(a.bytes(), 3072);
        let mut c = b.reservation();
        assert!(matches!(c.grow_to(2048), Err(Error::Busy { limit: 4096 })));
        c.grow_to(1024).unwrap();
        drop(a);
        c.grow_to(4096).unwrap();
        assert_eq!(c.bytes(), 4096);
    }
}
