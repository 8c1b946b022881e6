//! Config keys from environment variables: `VPC_FLOW_EXPORTER__` and the
//! key path with `__` between the parts (the rules are in `config.rs`).

use super::{ConfigError, ENV_PREFIX};

/// Separator of list items in an environment variable value.
const ENV_LIST_SEPARATOR: char = ',';
/// Separator between the parts of a key path in an environment variable name.
const ENV_SEPARATOR: &str = "__";
/// Keys (last part of the path) whose environment values are lists.
const ENV_LIST_KEYS: &[&str] = &[
    "paths",
    "service_ports",
    "interfaces",
    "addresses",
    "session_labels",
];

/// The key path that variable `name` sets, like `cloudwatch.log_groups[0].name`;
/// `None` when the name lacks our prefix.
pub(super) fn env_key(name: &str) -> Result<Option<String>, ConfigError> {
    let Some(rest) = name
        .get(..ENV_PREFIX.len())
        .filter(|prefix| prefix.eq_ignore_ascii_case(ENV_PREFIX))
        .map(|_| &name[ENV_PREFIX.len()..])
    else {
        return Ok(None);
    };
    let unusable = |why: &str| ConfigError::Invalid {
        origin: env_origin(name),
        message: format!(
            "{why} (expected {ENV_PREFIX}SECTION__KEY, parts separated by {ENV_SEPARATOR})"
        ),
    };
    let mut key = String::new();
    for part in rest.split(ENV_SEPARATOR) {
        let part = part.to_ascii_lowercase();
        if part.is_empty() {
            return Err(unusable("empty part in the name"));
        }
        if part.bytes().all(|b| b.is_ascii_digit()) {
            // An index into a list of tables; bounded so a typo cannot
            // allocate a huge list.
            match part.parse::<u16>() {
                Ok(index) if index < 1000 && !key.is_empty() => key.push_str(&format!("[{index}]")),
                _ => {
                    return Err(unusable(&format!(
                        "list index {part} is out of place or too large"
                    )));
                }
            }
        } else if part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(&part);
        } else {
            return Err(unusable(&format!("{part:?} is not a key name")));
        }
    }
    Ok(Some(key))
}

/// A list key: its last part is a list name, below a section.
pub(super) fn is_list_key(key: &str) -> bool {
    key.rsplit_once('.')
        .is_some_and(|(_, last)| ENV_LIST_KEYS.contains(&last))
}

pub(super) fn split_list(value: &str) -> Vec<String> {
    value
        .split(ENV_LIST_SEPARATOR)
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(super) fn env_origin(name: &str) -> String {
    format!("environment variable {name}")
}
