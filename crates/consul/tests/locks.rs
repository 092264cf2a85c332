//! `ConsulLocks` against the fake Consul: two instances contending for one lock, a restarted
//! instance taking its session back, and a lost session announced to the engine.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use jobforge_consul::{ConsulClient, ConsulConfig, ConsulLocks, ConsulLocksConfig};
use jobforge_core::JobId;
use jobforge_core::ports::{LockKey, Locks};
use jobforge_testkit::fake_consul::{FakeConsul, FakeConsulConfig};

/// Session TTLs may be a second, so lock life can be watched in seconds; the rest is Consul's
/// behaviour scaled down (an unrenewed session expires after twice its TTL).
async fn quick_consul() -> FakeConsul {
    let mut config = FakeConsulConfig::new();
    config.ttl_min = Duration::from_secs(1);
    FakeConsul::start(config).await
}

fn client(consul: &FakeConsul) -> ConsulClient {
    ConsulClient::new(ConsulConfig::new(consul.url().parse().unwrap())).unwrap()
}

fn config(instance: &str) -> ConsulLocksConfig {
    ConsulLocksConfig {
        instance: instance.into(),
        ttl: Duration::from_secs(1),
        lock_delay: Duration::ZERO,
        ..ConsulLocksConfig::default()
    }
}

async fn instance(consul: &FakeConsul, name: &str) -> (ConsulLocks, CancellationToken) {
    let shutdown = CancellationToken::new();
    let locks = ConsulLocks::start(client(consul), config(name), shutdown.clone()).await.unwrap();
    (locks, shutdown)
}

#[tokio::test]
async fn one_job_of_one_instance_holds_a_lock_until_it_gives_it_back() {
    let consul = quick_consul().await;
    let (a, _a) = instance(&consul, "a").await;
    let (b, _b) = instance(&consul, "b").await;
    let key = LockKey::build("127.0.0.1:5000", "team/app", "main");
    let (first, second, third) = (JobId::new(), JobId::new(), JobId::new());

    assert!(a.try_lock(&key, first).await.unwrap());
    assert!(a.try_lock(&key, first).await.unwrap(), "taking a lock again is fine");
    assert!(!a.try_lock(&key, third).await.unwrap(), "another job of the same instance waits");
    assert!(!b.try_lock(&key, second).await.unwrap(), "a job of another instance waits");
    assert_eq!(b.holder(&key).await.unwrap(), Some(first));

    b.unlock(&key, second).await.unwrap();
    a.unlock(&key, third).await.unwrap();
    assert_eq!(a.holder(&key).await.unwrap(), Some(first), "only the holder gives a lock back");

    let version = b.changed(0, Duration::ZERO).await.unwrap();
    let waiting = tokio::spawn({
        let b = b.clone();
        async move { b.changed(version, Duration::from_secs(30)).await.unwrap() }
    });
    a.unlock(&key, first).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap();
    assert!(next > version, "a release wakes the waiters");
    assert_eq!(b.holder(&key).await.unwrap(), None);
    assert!(b.try_lock(&key, second).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_outlive_the_ttl_while_renewed_and_pass_on_once_their_instance_is_gone() {
    let consul = quick_consul().await;
    let (a, a_shutdown) = instance(&consul, "a").await;
    let (b, _b) = instance(&consul, "b").await;
    let key = LockKey::owner(JobId::new());
    let (job, other) = (JobId::new(), JobId::new());
    assert!(a.try_lock(&key, job).await.unwrap());

    // Unrenewed, the session would have expired after 2 s.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(b.holder(&key).await.unwrap(), Some(job), "renewal keeps the lock past twice its 1 s TTL");
    assert!(!b.try_lock(&key, other).await.unwrap());

    a_shutdown.cancel();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !b.try_lock(&key, other).await.unwrap() {
        assert!(tokio::time::Instant::now() < deadline, "the lock of a stopped instance was never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(b.holder(&key).await.unwrap(), Some(other));
}

#[tokio::test]
async fn a_restarted_instance_takes_its_session_and_locks_back() {
    let consul = quick_consul().await;
    let dir = tempfile::tempdir().unwrap();
    let with_file = || ConsulLocksConfig {
        session_file: Some(dir.path().join("consul-session")),
        ttl: Duration::from_secs(10),
        ..config("a")
    };
    let key = LockKey::owner(JobId::new());
    let job = JobId::new();
    // The first life "crashes": its token is never cancelled, nor its session destroyed.
    let first = ConsulLocks::start(client(&consul), with_file(), CancellationToken::new()).await.unwrap();
    assert!(first.try_lock(&key, job).await.unwrap());

    let second = ConsulLocks::start(client(&consul), with_file(), CancellationToken::new()).await.unwrap();
    assert!(second.try_lock(&key, job).await.unwrap(), "the restarted instance still holds the job's lock");
    let (b, _b) = instance(&consul, "b").await;
    assert!(!b.try_lock(&key, JobId::new()).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_destroyed_behind_the_instances_back_is_replaced_and_announced() {
    let consul = quick_consul().await;
    let (a, _a) = instance(&consul, "a").await;
    let (b, _b) = instance(&consul, "b").await;
    let key = LockKey::owner(JobId::new());
    let job = JobId::new();
    assert!(a.try_lock(&key, job).await.unwrap());
    let mut lost = a.lost();
    assert_eq!(*lost.borrow_and_update(), 0);

    // An operator (or Consul losing its node health) ends a's session.
    let http = client(&consul);
    let (entry, _) = http.get(&format!("jobforge-service/locks/{key}"), None).await.unwrap();
    let session = entry.and_then(|e| e.session).expect("the lock names its session");
    http.destroy_session(&session).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), lost.changed()).await.unwrap().unwrap();
    assert_eq!(*lost.borrow(), 1);
    assert_eq!(b.holder(&key).await.unwrap(), None, "the lock went with the session");
    assert!(b.try_lock(&key, JobId::new()).await.unwrap(), "another instance takes the job over");
    assert!(!a.try_lock(&key, job).await.unwrap(), "and the old holder cannot take it back");
}

/// After its holder's session ends, Consul refuses a lock to everyone for the lock-delay, and
/// nothing changes in KV when the delay is over: `lock_delay` says how long to wait.
#[tokio::test]
async fn a_dead_holders_lock_is_refused_for_the_lock_delay_then_granted() {
    let consul = quick_consul().await;
    let delayed = || ConsulLocksConfig { lock_delay: Duration::from_secs(1), ..config("a") };
    let a = ConsulLocks::start(client(&consul), delayed(), CancellationToken::new()).await.unwrap();
    let b = ConsulLocks::start(
        client(&consul),
        ConsulLocksConfig { instance: "b".into(), ..delayed() },
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let key = LockKey::owner(JobId::new());
    assert!(a.try_lock(&key, JobId::new()).await.unwrap());
    let http = client(&consul);
    let (entry, _) = http.get(&format!("jobforge-service/locks/{key}"), None).await.unwrap();
    http.destroy_session(&entry.and_then(|e| e.session).unwrap()).await.unwrap();

    let other = JobId::new();
    assert_eq!(b.holder(&key).await.unwrap(), None, "the lock is free");
    assert!(!b.try_lock(&key, other).await.unwrap(), "but refused during the lock delay");
    assert!(b.lock_delay() >= Duration::from_secs(1));
    tokio::time::sleep(b.lock_delay()).await;
    assert!(b.try_lock(&key, other).await.unwrap(), "granted once the delay is over");
}
