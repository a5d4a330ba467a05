//! The scheduler lease: one object, `_lakepipe/scheduler.lease`, names the process that may
//! schedule runs on this lake. It is taken with a create-only write, renewed by a heartbeat
//! and expires when the holder stops renewing it. A lease left by a process of this host that
//! no longer exists (kill -9) is taken over at once. Lease times are wall-clock times, also
//! under `simulate`.
//!
//! Taking over a stale lease is a delete and a create, and two contenders that both read the
//! stale lease could each delete what the other had just created — both would then schedule.
//! So the right to replace a given stale lease is itself claimed with a create-only write: a
//! takeover marker named by the stale lease's digest, which only one contender can create.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::store::{CHECK_THEN_PUT_SETTLE, CreateMode, Store};

/// Key of the lease object.
pub const LEASE_KEY: &str = "_lakepipe/scheduler.lease";

/// Prefix of takeover markers, `<prefix><sha256 of the stale lease>-<attempt>`: one small
/// object per takeover (after a crash or an expiry), kept so that no stale lease can be taken
/// over twice.
pub const TAKEOVER_PREFIX: &str = "_lakepipe/scheduler.takeovers/";

/// What the lease object holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// Random ID of the holder (one per process start).
    pub owner: String,
    /// Host name of the holder.
    pub host: String,
    /// Process ID of the holder.
    pub pid: u32,
    /// What the holder runs (`up`, `simulate`, …).
    pub command: String,
    /// When it took the lease.
    pub acquired_at: DateTime<Utc>,
    /// Last renewal.
    pub heartbeat_at: DateTime<Utc>,
    /// The lease is free after this instant unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// The live holder of the lease, if a scheduler is running on this lake.
pub async fn holder(store: &Store) -> Result<Option<LeaseInfo>, crate::store::Error> {
    Ok(read_info(store, LEASE_KEY)
        .await?
        .filter(|h| h.expires_at > crate::clock::wall_now()))
}

/// The lease (or takeover marker) at `key`; `None` if absent or unreadable.
async fn read_info(store: &Store, key: &str) -> Result<Option<LeaseInfo>, crate::store::Error> {
    Ok(store
        .get_opt(key)
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

/// Why the lease could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another live scheduler holds it.
    #[error(
        "another scheduler is running on this lake: `lakepipe {}` (pid {} on {}), lease renewed {}, valid until {}; stop it first, or wait for its lease to expire",
        .0.command, .0.pid, .0.host, crate::clock::rfc3339_secs(.0.heartbeat_at), crate::clock::rfc3339_secs(.0.expires_at)
    )]
    Held(Box<LeaseInfo>),
    /// The lake could not be read or written.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Is process `pid` alive on this host? (`None` if this platform cannot tell.)
fn process_alive(pid: u32) -> Option<bool> {
    if cfg!(target_os = "linux") {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
        // A zombie (state Z) is dead for our purposes.
        Some(match stat {
            Ok(s) => !s
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => false,
        })
    } else {
        None
    }
}

/// A held lease. Renewed in the background until [`Lease::release`]; if it is lost (another
/// process took it over), [`Lease::lost`] fires.
#[derive(Debug)]
pub struct Lease {
    store: Store,
    info: LeaseInfo,
    stop: watch::Sender<bool>,
    lost: watch::Receiver<bool>,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Takes the lease for `command`, or says who holds it.
    pub async fn acquire(store: &Store, command: &str, ttl: Duration) -> Result<Lease, LeaseError> {
        let now = crate::clock::wall_now();
        let ttl_c = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(60));
        let info = LeaseInfo {
            owner: uuid::Uuid::from_u128(rand::random()).to_string(),
            host: host_name(),
            pid: std::process::id(),
            command: command.to_string(),
            acquired_at: now,
            heartbeat_at: now,
            expires_at: now + ttl_c,
        };
        let body = Bytes::from(serde_json::to_vec_pretty(&info).expect("lease serialises"));
        // Whether this contender replaced a stale lease (after a crash or an expiry).
        let mut took_over = false;
        for _ in 0..10 {
            if store.create_if_absent(LEASE_KEY, body.clone()).await? {
                if took_over || store.create_mode().await? == CreateMode::CheckThenPut {
                    // A store that ignores create-only writes let a scheduler that started at
                    // the same instant write too, and the last write stands: wait for writes in
                    // flight, then the lease is whoever's it is now. After a takeover the same
                    // check is made on every store (a second, once per crash): one whose
                    // create-only check is not atomic (moto checks, then puts) can let two
                    // contenders through the marker and the lease at the same instant.
                    tokio::time::sleep(CHECK_THEN_PUT_SETTLE).await;
                    if let Some(h) = read_info(store, LEASE_KEY)
                        .await?
                        .filter(|h| h.owner != info.owner)
                    {
                        return Err(LeaseError::Held(Box::new(h)));
                    }
                }
                return Ok(Lease::start(store.clone(), info, ttl));
            }
            let Some(existing) = store.get_opt(LEASE_KEY).await? else {
                continue; // released between our write and read: try again
            };
            let held: Option<LeaseInfo> = serde_json::from_slice(&existing).ok();
            let stale = match &held {
                None => true, // unreadable lease: treat as abandoned
                Some(h) if h.expires_at < crate::clock::wall_now() => {
                    tracing::warn!(holder = %h.command, pid = h.pid, host = %h.host, "taking over an expired scheduler lease");
                    true
                }
                Some(h)
                    if h.host == info.host
                        && h.pid != info.pid
                        && process_alive(h.pid) == Some(false) =>
                {
                    tracing::warn!(
                        pid = h.pid,
                        "the scheduler that held the lease (pid {}) is gone; taking over",
                        h.pid
                    );
                    true
                }
                Some(h) if h.owner == info.owner => {
                    return Ok(Lease::start(store.clone(), info, ttl));
                }
                Some(h) => return Err(LeaseError::Held(Box::new(h.clone()))),
            };
            if stale {
                if !claim_takeover(store, &existing, &body, ttl).await? {
                    // Another contender replaces this lease: let it, then read who holds it.
                    tokio::time::sleep(TAKEOVER_WAIT).await;
                    continue;
                }
                store.delete(LEASE_KEY).await?;
                took_over = true;
            }
        }
        match read_info(store, LEASE_KEY).await? {
            Some(h) => Err(LeaseError::Held(Box::new(h))),
            None => Err(LeaseError::Store(crate::store::Error::Unavailable {
                reason: "cannot take the scheduler lease: it keeps changing hands".into(),
            })),
        }
    }

    fn start(store: Store, info: LeaseInfo, ttl: Duration) -> Lease {
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let (lost_tx, lost_rx) = watch::channel(false);
        let hb_store = store.clone();
        let mut hb_info = info.clone();
        let heartbeat = tokio::spawn(async move {
            let every = ttl / 3;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop_rx.changed() => return,
                }
                match renew(&hb_store, &mut hb_info, ttl).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::error!(
                            "the scheduler lease was taken over by another process; stopping"
                        );
                        let _ = lost_tx.send(true);
                        return;
                    }
                    Err(e) => tracing::warn!("cannot renew the scheduler lease (will retry): {e}"),
                }
            }
        });
        Lease {
            store,
            info,
            stop: stop_tx,
            lost: lost_rx,
            heartbeat,
        }
    }

    /// A receiver that turns `true` if the lease is lost.
    pub fn lost(&self) -> watch::Receiver<bool> {
        self.lost.clone()
    }

    /// Stops renewing and deletes the lease object if it is still ours. If the lake cannot be
    /// reached, the lease is left to expire and a warning says so.
    pub async fn release(self) {
        // The heartbeat may already have ended (lease lost): nothing to stop then.
        let _ = self.stop.send(true);
        if let Err(e) = self.heartbeat.await {
            tracing::warn!("the lease heartbeat ended abnormally: {e}");
        }
        let ours = match read_info(&self.store, LEASE_KEY).await {
            Ok(h) => h.is_some_and(|h| h.owner == self.info.owner),
            Err(e) => {
                tracing::warn!(
                    "cannot read the scheduler lease to release it (it expires on its own): {e}"
                );
                false
            }
        };
        if ours && let Err(e) = self.store.delete(LEASE_KEY).await {
            tracing::warn!("cannot release the scheduler lease (it expires on its own): {e}");
        }
    }
}

/// How long a contender that lost a takeover waits before it reads the new holder.
const TAKEOVER_WAIT: Duration = Duration::from_millis(200);

/// Claims the right to replace the stale lease whose bytes are `stale`, with a create-only
/// write of a marker holding `body` (the claimant's lease): only one contender creates it. A
/// marker older than `ttl` was left by a claimant that died between the marker and its new
/// lease; the next attempt number is claimed instead.
async fn claim_takeover(
    store: &Store,
    stale: &[u8],
    body: &Bytes,
    ttl: Duration,
) -> Result<bool, crate::store::Error> {
    use sha2::Digest;
    let digest = crate::hex::hex(&sha2::Sha256::digest(stale));
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(60));
    for attempt in 0..8 {
        let key = format!("{TAKEOVER_PREFIX}{digest}-{attempt}");
        if store.create_if_absent(&key, body.clone()).await? {
            return Ok(true);
        }
        let claimant = read_info(store, &key).await?;
        // A claimant that died on this host (between its marker and its new lease) is passed
        // over at once, as its lease would be; elsewhere its marker is trusted for `ttl`.
        let live = |c: &LeaseInfo| {
            c.acquired_at + ttl > crate::clock::wall_now()
                && !(c.host == host_name()
                    && c.pid != std::process::id()
                    && process_alive(c.pid) == Some(false))
        };
        if claimant.as_ref().is_some_and(live) {
            return Ok(false);
        }
    }
    Ok(false)
}

/// Renews the lease if it is still ours; `false` if someone else holds it now.
async fn renew(
    store: &Store,
    info: &mut LeaseInfo,
    ttl: Duration,
) -> Result<bool, crate::store::Error> {
    let Some((held, e_tag)) = store.get_tagged(LEASE_KEY).await? else {
        return Ok(false);
    };
    let ours = serde_json::from_slice::<LeaseInfo>(&held).is_ok_and(|h| h.owner == info.owner);
    if !ours {
        return Ok(false);
    }
    let now = crate::clock::wall_now();
    info.heartbeat_at = now;
    info.expires_at =
        now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(60));
    let body = Bytes::from(serde_json::to_vec_pretty(&*info).expect("lease serialises"));
    // Only over the version just read: a holder paused past its expiry, whose lease another
    // scheduler has taken over since the read, does not overwrite the new holder's lease
    // (`If-Match`, where the store honours it).
    match e_tag {
        Some(tag) => {
            if store
                .replace_if_unchanged(LEASE_KEY, body.clone(), &tag)
                .await?
            {
                return Ok(true);
            }
            // Refused: another holder's lease — or this very write, made once already and
            // repeated after its answer was lost.
            Ok(store
                .get_opt(LEASE_KEY)
                .await?
                .is_some_and(|now| now == body))
        }
        None => {
            store.put(LEASE_KEY, body, &Default::default()).await?;
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lease of `command` by `pid` on `host`, taken at `at` for a minute.
    fn lease_of(command: &str, host: &str, pid: u32, at: DateTime<Utc>) -> Bytes {
        let info = LeaseInfo {
            owner: uuid::Uuid::from_u128(rand::random()).to_string(),
            host: host.into(),
            pid,
            command: command.into(),
            acquired_at: at,
            heartbeat_at: at,
            expires_at: at + chrono::Duration::seconds(60),
        };
        Bytes::from(serde_json::to_vec_pretty(&info).unwrap())
    }

    /// A lease whose holder stopped renewing it a minute ago.
    fn expired(command: &str) -> Bytes {
        let then = crate::clock::wall_now() - chrono::Duration::seconds(120);
        lease_of(command, "elsewhere", 1, then)
    }

    /// Writes `stale` as the lease and `marker` as the first claim to take it over, as a
    /// claimant that died between its marker and its new lease leaves them; the stale lease's
    /// digest (which names its claims).
    async fn abandoned_takeover(store: &Store, stale: &Bytes, marker: Bytes) -> String {
        use sha2::Digest;
        store
            .put(LEASE_KEY, stale.clone(), &Default::default())
            .await
            .unwrap();
        let digest = crate::hex::hex(&sha2::Sha256::digest(stale));
        store
            .put(
                &format!("{TAKEOVER_PREFIX}{digest}-0"),
                marker,
                &Default::default(),
            )
            .await
            .unwrap();
        digest
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn of_contenders_for_a_stale_lease_exactly_one_takes_it_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local_store(dir.path()).await;
        let ttl = Duration::from_secs(30);
        for round in 0..40 {
            store
                .put(LEASE_KEY, expired("up"), &Default::default())
                .await
                .unwrap();
            let contenders: Vec<_> = (0..4)
                .map(|_| {
                    let store = store.clone();
                    tokio::spawn(async move { Lease::acquire(&store, "simulate", ttl).await })
                })
                .collect();
            let mut held = Vec::new();
            let mut refused = Vec::new();
            for c in contenders {
                match c.await.unwrap() {
                    Ok(lease) => held.push(lease),
                    Err(LeaseError::Held(h)) => refused.push(h.owner),
                    Err(e) => panic!("round {round}: {e}"),
                }
            }
            assert_eq!(held.len(), 1, "round {round}: {} holders", held.len());
            let winner = held.pop().unwrap();
            assert!(
                refused.iter().all(|o| *o == winner.info.owner),
                "round {round}: a refused contender named another holder"
            );
            winner.release().await;
        }
    }

    #[tokio::test]
    async fn a_takeover_abandoned_between_marker_and_lease_is_claimed_again_after_the_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local_store(dir.path()).await;
        // A claimant that died right after its marker, a minute ago.
        let digest = abandoned_takeover(&store, &expired("up"), expired("simulate")).await;
        let lease = Lease::acquire(&store, "up", Duration::from_secs(30))
            .await
            .expect("the abandoned takeover does not block the lake");
        assert!(
            store
                .head(&format!("{TAKEOVER_PREFIX}{digest}-1"))
                .await
                .unwrap()
                .is_some()
        );
        lease.release().await;
    }

    /// Found by `serve` through the fault proxy: a scheduler that took over a dead one's
    /// lease and died before its own lease was written (its delete of the old one failed)
    /// kept every scheduler started after it off the lake for a minute, saying the dead
    /// one was running.
    #[tokio::test]
    async fn a_takeover_marker_left_by_a_dead_process_on_this_host_is_passed_over_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local_store(dir.path()).await;
        // A live lease and a fresh marker, both of a process of this host that is gone.
        let now = crate::clock::wall_now();
        let dead = |command: &str| lease_of(command, &host_name(), u32::MAX - 1, now);
        abandoned_takeover(&store, &dead("serve"), dead("serve")).await;
        let lease = Lease::acquire(&store, "serve", Duration::from_secs(30))
            .await
            .expect("the dead claimant does not hold the lake");
        assert_eq!(lease.info.pid, std::process::id());
        lease.release().await;
    }

    #[test]
    fn this_process_is_alive_and_a_free_pid_is_not() {
        if cfg!(target_os = "linux") {
            assert_eq!(process_alive(std::process::id()), Some(true));
            assert_eq!(process_alive(u32::MAX - 1), Some(false));
        }
    }

    /// A holder that read its lease, then paused while another scheduler took the lease over,
    /// does not overwrite the new holder's lease when it renews (`If-Match` on the version it
    /// read): it learns that it lost the lease.
    #[tokio::test]
    async fn a_renewal_after_a_takeover_does_not_overwrite_the_new_holder() {
        let store = crate::store::over(std::sync::Arc::new(object_store::memory::InMemory::new()));
        let mut ours: LeaseInfo = serde_json::from_slice(&expired("ours")).unwrap();
        let body = Bytes::from(serde_json::to_vec_pretty(&ours).unwrap());
        store
            .put(LEASE_KEY, body, &Default::default())
            .await
            .unwrap();
        assert!(
            renew(&store, &mut ours, Duration::from_secs(60))
                .await
                .unwrap()
        );
        let renewed = read_info(&store, LEASE_KEY).await.unwrap().unwrap();
        assert_eq!(renewed.owner, ours.owner);
        assert!(renewed.expires_at > crate::clock::wall_now());
        // The read, then a takeover, then the write.
        let (_, tag) = store.get_tagged(LEASE_KEY).await.unwrap().unwrap();
        let theirs = expired("theirs");
        store
            .put(LEASE_KEY, theirs.clone(), &Default::default())
            .await
            .unwrap();
        let late = Bytes::from(serde_json::to_vec_pretty(&ours).unwrap());
        let replaced = store
            .replace_if_unchanged(LEASE_KEY, late, &tag.unwrap())
            .await
            .unwrap();
        assert!(!replaced);
        assert_eq!(store.get_opt(LEASE_KEY).await.unwrap().unwrap(), theirs);
        // And renew() sees the lease is no longer its own.
        assert!(
            !renew(&store, &mut ours, Duration::from_secs(60))
                .await
                .unwrap()
        );
    }
}
