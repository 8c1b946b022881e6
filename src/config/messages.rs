//! What a configuration error says: [`ConfigError`], and [`Origins`],
//! which turns serde's and the config crate's errors into messages that
//! name the file or the environment variable, the key path and what was
//! expected.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::environment::env_origin;

/// A configuration that cannot be used; `Display` gives the whole message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML.
    #[error("{origin}: not valid TOML: {message}")]
    Syntax {
        /// The file.
        origin: String,
        /// The TOML parser's message, with line and column.
        message: String,
    },
    /// A key that the schema does not know.
    #[error("{origin}: unknown key \"{key}\" (expected one of: {})", expected.join(", "))]
    UnknownKey {
        /// The file, or `environment variable NAME`.
        origin: String,
        /// Its full path, e.g. `cloudwatch.regoin`.
        key: String,
        /// The keys allowed at that place.
        expected: Vec<String>,
    },
    /// A key whose value is wrong or missing.
    #[error("{origin}: {key}: {message}")]
    Value {
        /// The file, or `environment variable NAME`.
        origin: String,
        /// Its full path, e.g. `cloudwatch.log_groups[1].name`.
        key: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A rule about the whole configuration, or an unusable variable name.
    #[error("{origin}: {message}")]
    Invalid {
        /// The file, or `environment variable NAME`.
        origin: String,
        /// What is wrong.
        message: String,
    },
}

/// Where each value came from, so that a message names the file or the variable.
pub(super) struct Origins {
    /// The file's name in messages (or `environment` without a file).
    pub(super) file: String,
    /// Key path set by an environment variable → the variable's name.
    pub(super) env: BTreeMap<String, String>,
}

impl Origins {
    /// The origin of the value at `key`: the variable that set it or one of
    /// its parents, else the file.
    pub(super) fn of(&self, key: &str) -> String {
        self.env
            .iter()
            .filter(|(set, _)| {
                key.strip_prefix(set.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
            })
            .max_by_key(|(set, _)| set.len())
            .map_or_else(|| self.file.clone(), |(_, name)| env_origin(name))
    }

    /// A variable that set a key inside `section`, if any.
    pub(super) fn under(&self, section: &str) -> Option<String> {
        self.env
            .iter()
            .find(|(key, _)| key.split(['.', '[']).next() == Some(section))
            .map(|(_, name)| env_origin(name))
    }

    pub(super) fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Value {
            origin: self.of(key),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// Turns a deserialization error into one that names the key path.
    pub(super) fn deserialize_error(
        &self,
        err: serde_path_to_error::Error<::config::ConfigError>,
    ) -> ConfigError {
        let path = match err.path().to_string() {
            root if root == "." => String::new(),
            path => path,
        };
        let mut inner = err.into_inner();
        // The config crate wraps errors with a partial key; the path is better.
        while let ::config::ConfigError::At { error, .. } = inner {
            inner = *error;
        }
        let message = match inner {
            ::config::ConfigError::NotFound(key) => {
                // The config crate prefixes the field with a path of its own
                // (`log_groups[0]name`): keep the field only.
                let field = key.rsplit(['.', ']']).next().unwrap_or(&key);
                return self.error(&join(&path, field), "missing (this key is required)");
            }
            ::config::ConfigError::Type {
                unexpected,
                expected,
                ..
            } => type_message(&unexpected.to_string(), expected),
            ::config::ConfigError::Message(message) => {
                if let Some((field, expected)) = parse_unknown_field(&message) {
                    // The path may or may not already end with the unknown key.
                    let key = if path == field || path.ends_with(&format!(".{field}")) {
                        path
                    } else {
                        join(&path, &field)
                    };
                    return ConfigError::UnknownKey {
                        origin: self.of(&key),
                        key,
                        expected,
                    };
                }
                humanize(&message)
            }
            other => other.to_string(),
        };
        if message == GAP_MESSAGE {
            // Only the environment leaves holes in a list.
            return ConfigError::Value {
                origin: "environment".to_owned(),
                key: path,
                message,
            };
        }
        if path.is_empty() {
            return ConfigError::Invalid {
                origin: self.file.clone(),
                message,
            };
        }
        self.error(&path, message)
    }
}

const GAP_MESSAGE: &str =
    "missing: environment variables must number list entries from 0, without gaps";

/// `path.key`, or `key` at the top.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// serde's `unknown field `x`, expected one of `a`, `b`` (or `expected
/// `a``, or `there are no fields`) → (`x`, [`a`, `b`]). Shared with the web
/// configuration's messages.
pub(crate) fn parse_unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    Some((field.to_owned(), expected))
}

/// serde's `invalid type: X, expected Y` → `expected Y, got X`, in config words.
fn humanize(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some((unexpected, expected)) = message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once(", expected "))
        {
            return type_message(unexpected, expected);
        }
    }
    message.to_owned()
}

fn type_message(unexpected: &str, expected: &str) -> String {
    let expected = match expected {
        "a sequence" => "a list",
        "a map" => "a table",
        struct_name if struct_name.starts_with("struct ") => "a table",
        other => other,
    };
    let unexpected = match unexpected {
        "unit value" => return GAP_MESSAGE.to_owned(),
        "sequence" => "a list".to_owned(),
        "map" => "a table".to_owned(),
        string if string.starts_with("string ") => string.to_owned(),
        // `integer `5`` reads better without the backticks.
        other => other.replace('`', ""),
    };
    format!("expected {expected}, got {unexpected}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_in_config_words() {
        assert_eq!(
            humanize("invalid type: string \"x\", expected a sequence"),
            "expected a list, got string \"x\""
        );
        assert_eq!(
            humanize("invalid type: integer `5`, expected struct ServerConfig"),
            "expected a table, got integer 5"
        );
        assert_eq!(
            parse_unknown_field("unknown field `regoin`, expected one of `region`, `endpoint_url`"),
            Some((
                "regoin".into(),
                vec!["region".into(), "endpoint_url".into()]
            ))
        );
        assert_eq!(
            parse_unknown_field("unknown field `x`, expected `a` or `b`"),
            Some(("x".into(), vec!["a".into(), "b".into()]))
        );
    }
}
