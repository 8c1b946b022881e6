use super::*;
use crate::source::cloudwatch::fake::FakeLogs;
use crate::source::cloudwatch::{Poller, PollerConfig};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Records when each call reached the API, on tokio's clock.
#[derive(Clone)]
struct Timed {
    inner: FakeLogs,
    start: Instant,
    calls: Arc<Mutex<Vec<Duration>>>,
}

impl LogsApi for Timed {
    async fn interface_streams_page(
        &self,
        log_group: &str,
        next_token: Option<String>,
    ) -> Result<StreamsPage, ApiError> {
        self.calls.lock().unwrap().push(self.start.elapsed());
        self.inner
            .interface_streams_page(log_group, next_token)
            .await
    }

    async fn filter_log_events(&self, req: &FilterRequest) -> Result<EventsPage, ApiError> {
        self.calls.lock().unwrap().push(self.start.elapsed());
        self.inner.filter_log_events(req).await
    }
}

/// An API that retries within a call, as the AWS one does
/// (`attempts::call`): every third FilterLogEvents attempt is
/// throttled; notes when each attempt reached it.
#[derive(Clone)]
struct Throttling {
    inner: FakeLogs,
    start: Instant,
    attempts: Arc<Mutex<Vec<Duration>>>,
    calls: Arc<AtomicU64>,
}

impl Throttling {
    async fn filter_once(&self, req: &FilterRequest) -> Result<EventsPage, ApiError> {
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap();
            attempts.push(self.start.elapsed());
            attempts.len()
        };
        if attempt % 3 == 0 {
            return Err(crate::source::cloudwatch::fake::throttled());
        }
        self.inner.filter_log_events(req).await
    }
}

impl LogsApi for Throttling {
    async fn interface_streams_page(
        &self,
        log_group: &str,
        next_token: Option<String>,
    ) -> Result<StreamsPage, ApiError> {
        self.inner
            .interface_streams_page(log_group, next_token)
            .await
    }

    async fn filter_log_events(&self, req: &FilterRequest) -> Result<EventsPage, ApiError> {
        self.filter_once(req).await
    }

    async fn filter_log_events_taking_turns(
        &self,
        req: &FilterRequest,
        turns: &impl Turns,
    ) -> Result<EventsPage, ApiError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        crate::source::cloudwatch::attempts::call(turns, || self.filter_once(req))
            .await
            .result
    }
}

/// Every attempt takes its turn, retries included: while every third
/// attempt is throttled, consecutive attempts are still at least
/// (1 s + 50 ms) / rate apart, and every call succeeds.
#[tokio::test(start_paused = true)]
async fn retries_take_their_turn() {
    let counts = Arc::new(Counts::default());
    let budget = RequestBudget::new(2.0, "test/us-east-1".into(), counts.clone());
    let fake = FakeLogs::new(1_000);
    fake.set_now(120_000);
    for n in 0..500u32 {
        fake.put(&format!("eni-{n:08x}-all"), 60_000, 61_000);
    }
    let api = Throttling {
        inner: fake,
        start: Instant::now(),
        attempts: Arc::default(),
        calls: Arc::default(),
    };
    let mut poller = Poller::new(
        Budgeted::new(api.clone(), budget),
        PollerConfig::new("/g"),
        100_000,
    );
    for round in 0..3 {
        poller.poll(120_000 + round * 30_000).await.unwrap();
    }
    let attempts = api.attempts.lock().unwrap();
    let calls = api.calls.load(Ordering::Relaxed) as usize;
    assert_eq!(calls, 3 * 5, "3 polls of 500 streams");
    // Each throttled attempt retried once: one in three.
    assert_eq!(attempts.len(), calls + calls / 2);
    let spacing = (Duration::from_secs(1) + JITTER_ALLOWANCE) / 2;
    for pair in attempts.windows(2) {
        assert!(pair[1] - pair[0] >= spacing, "{attempts:?}");
    }
    assert!(counts.delayed.load(Ordering::Relaxed) > 0);
}

#[derive(Default)]
struct Counts {
    delayed: AtomicU64,
    over: Mutex<Option<f64>>,
}

impl BudgetObserver for Counts {
    fn delayed(&self, _seconds: f64) {
        self.delayed.fetch_add(1, Ordering::Relaxed);
    }
    fn used(&self, _ratio: f64) {}
    fn demand(&self, ratio: f64) {
        *self.over.lock().unwrap() = Some(ratio);
    }
}

/// Three groups of one account-region, 1,000 streams in all, listed in
/// pages of 50 and polled together: the calls that reach the API
/// (DescribeLogStreams pages included) in any one-second bucket never
/// exceed the budget, and the waits are counted.
#[tokio::test(start_paused = true)]
async fn calls_per_second_never_exceed_the_budget() {
    let counts = Arc::new(Counts::default());
    let budget = RequestBudget::new(2.0, "test/us-east-1".into(), counts.clone());
    let calls = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (group, streams) in [("/a", 500u32), ("/b", 300), ("/c", 200)] {
        let fake = FakeLogs::new(1_000);
        fake.set_streams_per_page(50);
        fake.set_now(120_000);
        for n in 0..streams {
            fake.put(
                &format!("eni-{group_n}{n:07x}-all", group_n = group.len()),
                60_000,
                61_000,
            );
        }
        let api = Budgeted::new(
            Timed {
                inner: fake,
                start,
                calls: calls.clone(),
            },
            budget.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut poller = Poller::new(api, PollerConfig::new(group), 100_000);
            for round in 0..3 {
                poller.poll(120_000 + round * 30_000).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let calls = calls.lock().unwrap();
    let mut per_second: BTreeMap<u64, u32> = BTreeMap::new();
    for at in calls.iter() {
        *per_second.entry(at.as_secs()).or_default() += 1;
    }
    // Listings of 10 + 6 + 4 pages, then 3 polls of ⌈streams / 100⌉ =
    // 5 + 3 + 2 pages.
    assert!(calls.len() >= 20 + 3 * 10, "{} calls", calls.len());
    assert!(per_second.values().all(|n| *n <= 2), "{per_second:?}");
    assert!(counts.delayed.load(Ordering::Relaxed) > 0);
}

/// A group moved to another budget takes its demand along, and its
/// next call waits as long as it would have in the old one: the
/// hand-over makes no burst.
#[tokio::test(start_paused = true)]
async fn a_group_moved_to_another_budget_takes_its_demand_and_makes_no_burst() {
    let (old_counts, new_counts) = (Arc::new(Counts::default()), Arc::new(Counts::default()));
    let old = RequestBudget::new(2.0, "unknown/r".into(), old_counts.clone());
    let new = RequestBudget::new(2.0, "1/r".into(), new_counts.clone());
    new.set_demand("/other", 30, Duration::from_secs(30));
    let api = Budgeted::new(FakeLogs::new(1_000), old.clone());
    api.budget()
        .set_demand("/moved", 60, Duration::from_secs(30));
    assert_eq!(*old_counts.over.lock().unwrap(), Some(1.0));
    assert_eq!(api.budget().take_turn().await, Duration::ZERO);
    let left = api.move_to("/moved", new.clone());
    assert!(Arc::ptr_eq(&left, &old));
    assert!(Arc::ptr_eq(&api.budget(), &new));
    assert_eq!(*old_counts.over.lock().unwrap(), Some(0.0));
    assert_eq!(*new_counts.over.lock().unwrap(), Some(1.5));
    // 2/s: (1 s + 50 ms) / 2 after the call made in the old budget.
    assert_eq!(api.budget().take_turn().await, Duration::from_millis(525));
}

#[test]
fn demand_over_the_budget_is_reported() {
    let counts = Arc::new(Counts::default());
    let budget = RequestBudget::new(2.0, "test".into(), counts.clone());
    budget.set_demand("/a", 30, Duration::from_secs(30));
    assert_eq!(*counts.over.lock().unwrap(), Some(0.5));
    budget.set_demand("/b", 90, Duration::from_secs(30));
    assert_eq!(*counts.over.lock().unwrap(), Some(2.0));
}
