//! `basic_auth_users`: HTTP basic authentication against bcrypt hashes.
//!
//! A wrong password, an unknown user and a right password cost the same:
//! an unknown user is checked against a dummy hash of the highest cost
//! configured, so response times do not tell which user names exist.
//! bcrypt is slow on purpose (a cost of 10 is ~70 ms of CPU): checks run
//! on the blocking pool, one at a time, so a flood of guesses cannot take
//! every core from the scrape.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use hyper::header::HeaderValue;
use tokio::sync::Semaphore;

/// The users and their hashes; empty means no basic authentication.
#[derive(Debug, Default, Clone)]
pub struct BasicAuth {
    users: Arc<BTreeMap<String, String>>,
    /// A well-formed hash that no password matches, at the highest cost.
    dummy_hash: String,
}

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
        let Ok(_permit) = CHECKS.acquire().await else {
            return false;
        };
        let matched = tokio::task::spawn_blocking(move || {
            bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        matched && known
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
