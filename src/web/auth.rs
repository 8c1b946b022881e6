//! `basic_auth_users`: HTTP basic authentication against bcrypt hashes.
//!
//! A wrong password, an unknown user and a right password cost the same:
//! an unknown user is checked against a dummy hash of the highest cost
//! configured, so response times do not tell which user names exist.
//! bcrypt is slow on purpose (a cost of 10 is ~70 ms of CPU): checks run
//! on the blocking pool, one at a time, so a flood of guesses cannot take
//! every core from the scrape. A user and password that passed once pass
//! again without bcrypt (as exporter-toolkit caches them), so Prometheus's
//! scrapes never queue behind a flood of wrong passwords.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashSet};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use hyper::header::HeaderValue;
use tokio::sync::Semaphore;

/// The users and their hashes; empty means no basic authentication.
#[derive(Debug, Default, Clone)]
pub struct BasicAuth {
    users: Arc<BTreeMap<String, String>>,
    /// A well-formed hash that no password matches, at the highest cost.
    dummy_hash: String,
    /// Keyed hashes of the (user, password) pairs that passed: never the
    /// passwords themselves. Forgotten with the configuration (a reload
    /// makes a new `BasicAuth`).
    passed: Arc<Mutex<HashSet<u64>>>,
    /// This process's key for those hashes.
    keys: RandomState,
    /// bcrypt work done: 2^cost per verification (the rounds of its key
    /// schedule), so tests can see that every kind of failure costs what
    /// a success costs, without measuring time.
    work: Arc<AtomicU64>,
}

/// Pairs remembered as passed at most; past it the memory starts over.
const MAX_PASSED: usize = 64;

/// bcrypt checks in flight at once (exporter-toolkit also runs one at a time).
static CHECKS: Semaphore = Semaphore::const_new(1);

impl BasicAuth {
    /// Validates every hash; an error is (user, message).
    pub fn new(users: BTreeMap<String, String>) -> Result<Self, (String, String)> {
        let mut cost = bcrypt::DEFAULT_COST;
        for (index, (user, hash)) in users.iter().enumerate() {
            let parts: bcrypt::HashParts = hash.parse().map_err(|_| {
                (
                    user.clone(),
                    "not a bcrypt hash (expected one like \"$2y$10$...\", as made by \
                     `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)"
                        .to_owned(),
                )
            })?;
            if index == 0 || parts.get_cost() > cost {
                cost = parts.get_cost();
            }
            if user.contains(':') {
                return Err((
                    user.clone(),
                    "a user name cannot contain ':' (basic authentication splits on it)".into(),
                ));
            }
        }
        Ok(BasicAuth {
            users: Arc::new(users),
            // 22 salt and 31 hash characters of bcrypt's base64: all zero bits.
            dummy_hash: format!("$2b${cost:02}${}", ".".repeat(53)),
            passed: Arc::default(),
            keys: RandomState::new(),
            work: Arc::default(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `authorization` (the request's header) names a configured
    /// user with the right password. Runs bcrypt on the blocking pool.
    pub async fn allows(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = authorization.and_then(decode) else {
            return false;
        };
        let (hash, known) = match self.users.get(&user) {
            Some(hash) => (hash.clone(), true),
            None => (self.dummy_hash.clone(), false),
        };
        let pair = self.keys.hash_one((&user, &password));
        if known && self.passed().contains(&pair) {
            return true;
        }
        let Ok(_permit) = CHECKS.acquire().await else {
            return false;
        };
        let work = self.work.clone();
        let matched = tokio::task::spawn_blocking(move || {
            let rounds = hash
                .parse::<bcrypt::HashParts>()
                .map_or(0, |parts| 1u64 << parts.get_cost());
            let matched = bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false);
            work.fetch_add(rounds, Ordering::Relaxed);
            matched
        })
        .await
        .unwrap_or(false);
        if matched && known {
            let mut passed = self.passed();
            if passed.len() >= MAX_PASSED {
                passed.clear();
            }
            passed.insert(pair);
        }
        matched && known
    }

    /// bcrypt work done so far, in rounds (2^cost per verification).
    #[cfg(test)]
    fn work(&self) -> u64 {
        self.work.load(Ordering::Relaxed)
    }

    fn passed(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.passed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `Basic base64(user:password)` → (user, password).
fn decode(header: &HeaderValue) -> Option<(String, String)> {
    let text = header.to_str().ok()?;
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> HeaderValue {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    #[tokio::test]
    async fn only_the_right_password_of_a_known_user_passes() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let auth = BasicAuth::new(BTreeMap::from([("prometheus".to_owned(), hash)])).unwrap();
        assert!(auth.allows(Some(&header("prometheus", "secret"))).await);
        assert!(!auth.allows(Some(&header("prometheus", "wrong"))).await);
        assert!(!auth.allows(Some(&header("nobody", "secret"))).await);
        assert!(!auth.allows(None).await);
        assert!(
            !auth
                .allows(Some(&HeaderValue::from_static("Bearer x")))
                .await
        );
    }

    /// Once passed, a pair passes while the bcrypt queue is held (by a
    /// flood of guesses); a wrong password still waits for it.
    #[tokio::test]
    async fn a_pair_that_passed_once_skips_the_bcrypt_queue() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let auth = BasicAuth::new(BTreeMap::from([("prometheus".to_owned(), hash)])).unwrap();
        assert!(auth.allows(Some(&header("prometheus", "secret"))).await);
        let held = CHECKS.acquire().await.unwrap();
        let wait = std::time::Duration::from_millis(200);
        let (right, wrong) = (
            header("prometheus", "secret"),
            header("prometheus", "wrong"),
        );
        let again = tokio::time::timeout(wait, auth.allows(Some(&right)));
        assert_eq!(again.await, Ok(true), "passed without bcrypt");
        let guess = tokio::time::timeout(wait, auth.allows(Some(&wrong)));
        assert!(guess.await.is_err(), "a wrong password waits for bcrypt");
        drop(held);
        assert!(!auth.allows(Some(&header("prometheus", "wrong"))).await);
        assert!(!auth.allows(Some(&header("nobody", "secret"))).await);
    }

    /// What a request costs in bcrypt work (rounds) and whether it passed.
    async fn work_of(auth: &BasicAuth, user: &str, password: &str) -> (bool, u64) {
        let before = auth.work();
        let allowed = auth.allows(Some(&header(user, password))).await;
        (allowed, auth.work() - before)
    }

    /// Timing without a clock: an unknown user and a wrong password each
    /// run one bcrypt verification at the configured cost, as a right
    /// password does, so the answer's time does not tell them apart.
    #[tokio::test]
    async fn a_wrong_password_and_an_unknown_user_cost_what_a_right_one_costs() {
        let cost = 5;
        let users = BTreeMap::from([
            (
                "prometheus".to_owned(),
                bcrypt::hash("secret", cost).unwrap(),
            ),
            ("grafana".to_owned(), bcrypt::hash("other", cost).unwrap()),
        ]);
        let auth = BasicAuth::new(users).unwrap();
        let one_verification = 1u64 << cost;
        assert_eq!(
            work_of(&auth, "prometheus", "secret").await,
            (true, one_verification)
        );
        for (user, password) in [
            ("prometheus", "wrong"),
            ("prometheus", "other"), // another user's password
            ("nobody", "secret"),
            ("nobody", ""),
            ("", "secret"),
            ("Prometheus", "secret"), // names are case-sensitive
        ] {
            assert_eq!(
                work_of(&auth, user, password).await,
                (false, one_verification),
                "{user}:{password}"
            );
        }
        // Failures are never remembered: the same guess costs again.
        assert_eq!(
            work_of(&auth, "nobody", "secret").await,
            (false, one_verification)
        );
        // A pair that passed is remembered (exporter-toolkit's cache): only
        // who knows the password gets the shortcut.
        assert_eq!(work_of(&auth, "prometheus", "secret").await, (true, 0));
    }

    /// With hashes of several costs, an unknown user costs the highest: as
    /// much as the most expensive user, never less than any.
    #[tokio::test]
    async fn an_unknown_user_costs_the_highest_configured_cost() {
        let users = BTreeMap::from([
            ("cheap".to_owned(), bcrypt::hash("x", 4).unwrap()),
            ("dear".to_owned(), bcrypt::hash("x", 6).unwrap()),
        ]);
        let auth = BasicAuth::new(users).unwrap();
        assert_eq!(work_of(&auth, "dear", "wrong").await, (false, 1 << 6));
        assert_eq!(work_of(&auth, "nobody", "x").await, (false, 1 << 6));
        assert_eq!(work_of(&auth, "cheap", "wrong").await, (false, 1 << 4));
    }

    #[test]
    fn the_dummy_hash_is_well_formed_at_the_highest_cost_and_matches_nothing() {
        let users = BTreeMap::from([
            ("a".to_owned(), bcrypt::hash("x", 4).unwrap()),
            ("b".to_owned(), bcrypt::hash("x", 5).unwrap()),
        ]);
        let auth = BasicAuth::new(users).unwrap();
        let parts: bcrypt::HashParts = auth.dummy_hash.parse().unwrap();
        assert_eq!(parts.get_cost(), 5);
        assert!(!bcrypt::verify("", &auth.dummy_hash).unwrap());
    }

    #[test]
    fn a_hash_that_is_not_bcrypt_is_named() {
        let error =
            BasicAuth::new(BTreeMap::from([("a".to_owned(), "plain".to_owned())])).unwrap_err();
        assert_eq!(error.0, "a");
    }
}
