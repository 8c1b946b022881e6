//! Flow log formats: which fields a record has, in which order.
//!
//! A format comes from a flow log's `LogFormat` (`${version} ${srcaddr} …`),
//! from plain space-separated field names, or from the header line that S3
//! delivery writes first. Field names AWS adds later are kept as opaque
//! columns, never an error: parsers that reject unknown names break each time
//! AWS publishes a field. Names are accepted with `-` or `_` (`tcp_flags` is
//! how Parquet, Athena and Vector spell `tcp-flags`); a name that looks like
//! a typo of a known one, and a format that lacks what sessions need, give a
//! [`FormatWarning`] for the reader to show once.

use std::fmt;

/// One column of a flow log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Version,
    AccountId,
    InterfaceId,
    SrcAddr,
    DstAddr,
    SrcPort,
    DstPort,
    Protocol,
    Packets,
    Bytes,
    Start,
    End,
    Action,
    LogStatus,
    // Version 3
    VpcId,
    SubnetId,
    InstanceId,
    TcpFlags,
    Type,
    PktSrcAddr,
    PktDstAddr,
    // Version 4
    Region,
    AzId,
    SublocationType,
    SublocationId,
    // Version 5
    PktSrcAwsService,
    PktDstAwsService,
    FlowDirection,
    TrafficPath,
    // Version 7 (ECS)
    EcsClusterArn,
    EcsClusterName,
    EcsContainerInstanceArn,
    EcsContainerInstanceId,
    EcsContainerId,
    EcsSecondContainerId,
    EcsServiceName,
    EcsTaskDefinitionArn,
    EcsTaskArn,
    EcsTaskId,
    // Later additions
    RejectReason,
    ResourceId,
    EncryptionStatus,
    /// A field this version of the exporter does not know: kept, not parsed.
    Other(Box<str>),
}

/// Every field name AWS has published, with its column.
const KNOWN_FIELDS: &[(&str, Field)] = &[
    ("version", Field::Version),
    ("account-id", Field::AccountId),
    ("interface-id", Field::InterfaceId),
    ("srcaddr", Field::SrcAddr),
    ("dstaddr", Field::DstAddr),
    ("srcport", Field::SrcPort),
    ("dstport", Field::DstPort),
    ("protocol", Field::Protocol),
    ("packets", Field::Packets),
    ("bytes", Field::Bytes),
    ("start", Field::Start),
    ("end", Field::End),
    ("action", Field::Action),
    ("log-status", Field::LogStatus),
    ("vpc-id", Field::VpcId),
    ("subnet-id", Field::SubnetId),
    ("instance-id", Field::InstanceId),
    ("tcp-flags", Field::TcpFlags),
    ("type", Field::Type),
    ("pkt-srcaddr", Field::PktSrcAddr),
    ("pkt-dstaddr", Field::PktDstAddr),
    ("region", Field::Region),
    ("az-id", Field::AzId),
    ("sublocation-type", Field::SublocationType),
    ("sublocation-id", Field::SublocationId),
    ("pkt-src-aws-service", Field::PktSrcAwsService),
    ("pkt-dst-aws-service", Field::PktDstAwsService),
    ("flow-direction", Field::FlowDirection),
    ("traffic-path", Field::TrafficPath),
    ("ecs-cluster-arn", Field::EcsClusterArn),
    ("ecs-cluster-name", Field::EcsClusterName),
    ("ecs-container-instance-arn", Field::EcsContainerInstanceArn),
    ("ecs-container-instance-id", Field::EcsContainerInstanceId),
    ("ecs-container-id", Field::EcsContainerId),
    ("ecs-second-container-id", Field::EcsSecondContainerId),
    ("ecs-service-name", Field::EcsServiceName),
    ("ecs-task-definition-arn", Field::EcsTaskDefinitionArn),
    ("ecs-task-arn", Field::EcsTaskArn),
    ("ecs-task-id", Field::EcsTaskId),
    ("reject-reason", Field::RejectReason),
    ("resource-id", Field::ResourceId),
    ("encryption-status", Field::EncryptionStatus),
];

impl Field {
    /// The column for a field name, spelled with `-` or `_`; unknown names
    /// become [`Field::Other`].
    pub fn from_name(name: &str) -> Field {
        Field::known(name)
            .cloned()
            .unwrap_or_else(|| Field::Other(name.into()))
    }

    fn known(name: &str) -> Option<&'static Field> {
        let dashed = |byte: u8| if byte == b'_' { b'-' } else { byte };
        KNOWN_FIELDS
            .iter()
            .find(|(known, _)| {
                known.len() == name.len()
                    && known.bytes().zip(name.bytes()).all(|(k, n)| k == dashed(n))
            })
            .map(|(_, field)| field)
    }

    pub fn name(&self) -> &str {
        match self {
            Field::Other(name) => name,
            known => KNOWN_FIELDS
                .iter()
                .find(|(_, field)| field == known)
                .map(|(name, _)| *name)
                .unwrap_or("?"),
        }
    }
}

/// The ordered fields of a flow log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFormat {
    fields: Vec<Field>,
}

/// Why a format string cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("the log format is empty")]
    Empty,
    #[error("unterminated \"${{\" in the log format at \"{0}\"")]
    Unterminated(String),
    #[error(
        "\"{0}\" is not a field: a log format is \"${{field}}\" tokens or field names separated by spaces"
    )]
    BadToken(String),
    #[error("field \"{0}\" appears twice in the log format")]
    Duplicate(String),
}

impl LogFormat {
    /// The default format (version 2).
    pub fn default_v2() -> LogFormat {
        LogFormat::parse(
            "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status",
        )
        .expect("the default format is valid")
    }

    /// Parses a `LogFormat` (`${version} ${srcaddr}`) or plain names (`version srcaddr`).
    pub fn parse(text: &str) -> Result<LogFormat, FormatError> {
        let mut fields = Vec::new();
        for token in text.split_ascii_whitespace() {
            let name = if let Some(rest) = token.strip_prefix("${") {
                rest.strip_suffix('}')
                    .ok_or_else(|| FormatError::Unterminated(token.to_string()))?
            } else {
                token
            };
            if name.is_empty() || !name.bytes().all(is_field_name_byte) {
                return Err(FormatError::BadToken(token.to_string()));
            }
            let field = Field::from_name(name);
            if fields.contains(&field) {
                return Err(FormatError::Duplicate(name.to_string()));
            }
            fields.push(field);
        }
        if fields.is_empty() {
            return Err(FormatError::Empty);
        }
        Ok(LogFormat { fields })
    }

    /// Reads an S3 header line: a line made only of field names, at least
    /// one of which the exporter knows. Names it does not know (fields AWS
    /// added later) become opaque columns. A record always has a value that
    /// cannot be a field name (a number, an address, `-`, `ACCEPT`), so the
    /// two are never confused.
    pub fn from_header_line(line: &str) -> Option<LogFormat> {
        let mut tokens = line.split_ascii_whitespace().peekable();
        tokens.peek()?;
        let mut knows_one = false;
        for token in tokens {
            if !looks_like_field_name(token) {
                return None;
            }
            knows_one |= !matches!(Field::from_name(token), Field::Other(_));
        }
        if !knows_one {
            return None;
        }
        LogFormat::parse(line).ok()
    }

    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    pub fn has(&self, field: &Field) -> bool {
        self.fields.contains(field)
    }

    /// What a reader should be told about this format. `interface_known`:
    /// the source names the interface of each record (a log stream), so a
    /// format without `interface-id` lacks nothing.
    pub fn warnings(&self, interface_known: bool) -> Vec<FormatWarning> {
        let mut warnings: Vec<FormatWarning> = self
            .fields
            .iter()
            .filter_map(|field| match field {
                Field::Other(name) => Some(match nearest_known(name) {
                    Some(nearest) => FormatWarning::Misspelled {
                        name: name.to_string(),
                        nearest,
                    },
                    None => FormatWarning::Unknown {
                        name: name.to_string(),
                    },
                }),
                _ => None,
            })
            .collect();
        let missing: Vec<&'static str> = SESSION_FIELDS
            .iter()
            .filter(|field| !self.has(field))
            .filter(|field| !(interface_known && **field == Field::InterfaceId))
            .map(|field| {
                KNOWN_FIELDS
                    .iter()
                    .find(|(_, known)| known == field)
                    .map_or("?", |(name, _)| *name)
            })
            .collect();
        if !missing.is_empty() {
            warnings.push(FormatWarning::LacksSessionFields { missing });
        }
        warnings
    }
}

/// The fields a session needs, by name, for [`FormatWarning::LacksSessionFields`].
const SESSION_FIELDS: &[Field] = &[
    Field::InterfaceId,
    Field::SrcAddr,
    Field::DstAddr,
    Field::SrcPort,
    Field::DstPort,
    Field::Protocol,
    Field::Action,
];

/// Something about a format that a reader should be told, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatWarning {
    /// An unknown name close to a known one: most likely a typo.
    Misspelled { name: String, nearest: &'static str },
    /// An unknown name far from every known one: perhaps a field AWS added
    /// after this version; kept as an opaque column.
    Unknown { name: String },
    /// Fields sessions need that the format does not have.
    LacksSessionFields { missing: Vec<&'static str> },
}

impl fmt::Display for FormatWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatWarning::Misspelled { name, nearest } => write!(
                f,
                "`{name}`: did you mean `{nearest}`? (not a flow log field; kept as an unused column)"
            ),
            FormatWarning::Unknown { name } => write!(
                f,
                "`{name}`: not a flow log field this version knows (a newer AWS field?); kept as an unused column"
            ),
            FormatWarning::LacksSessionFields { missing } => write!(
                f,
                "the log format lacks {}, which sessions need: records are counted, but sessions are missing or incomplete",
                missing.join(", ")
            ),
        }
    }
}

/// The known field nearest to an unknown name, when it is near enough to
/// be a typo rather than a new field.
fn nearest_known(name: &str) -> Option<&'static str> {
    let dashed = name.replace('_', "-");
    let (distance, nearest) = KNOWN_FIELDS
        .iter()
        .map(|(known, _)| (strsim::levenshtein(&dashed, known), *known))
        .min()?;
    let close = distance <= 2.max(dashed.len() / 4);
    close.then_some(nearest)
}

/// Lower-case letters first, then letters, digits, `-` and `_`: the shape
/// of every flow log field name, and of no record value.
fn looks_like_field_name(token: &str) -> bool {
    token.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && token.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'_'
        })
}

fn is_field_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, field) in self.fields.iter().enumerate() {
            if index > 0 {
                f.write_str(" ")?;
            }
            write!(f, "${{{}}}", field.name())?;
        }
        Ok(())
    }
}

/// How the format of an input is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatChoice {
    /// The S3 header line when the input starts with one, else version 2.
    Auto,
    Fixed(LogFormat),
}

impl FormatChoice {
    /// `auto` or a format string.
    pub fn parse(text: &str) -> Result<FormatChoice, FormatError> {
        if text.trim() == "auto" {
            Ok(FormatChoice::Auto)
        } else {
            LogFormat::parse(text).map(FormatChoice::Fixed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_log_format_and_plain_names_alike() {
        let a = LogFormat::parse("${version} ${srcaddr} ${tcp-flags}").unwrap();
        let b = LogFormat::parse("version srcaddr tcp-flags").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a.fields(),
            &[Field::Version, Field::SrcAddr, Field::TcpFlags]
        );
    }

    #[test]
    fn unknown_field_names_are_opaque_columns() {
        let format = LogFormat::parse("${version} ${some-future-field}").unwrap();
        assert_eq!(format.fields()[1], Field::Other("some-future-field".into()));
        assert_eq!(format.to_string(), "${version} ${some-future-field}");
    }

    #[test]
    fn rejects_unusable_format_strings() {
        assert_eq!(LogFormat::parse("  "), Err(FormatError::Empty));
        assert!(matches!(
            LogFormat::parse("${version"),
            Err(FormatError::Unterminated(_))
        ));
        assert!(matches!(
            LogFormat::parse("$version}"),
            Err(FormatError::BadToken(_))
        ));
        assert!(matches!(
            LogFormat::parse("srcaddr srcaddr"),
            Err(FormatError::Duplicate(_))
        ));
    }

    #[test]
    fn header_line_is_recognised_but_records_are_not() {
        let header = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status";
        assert_eq!(
            LogFormat::from_header_line(header),
            Some(LogFormat::default_v2())
        );
        let record = "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK";
        assert_eq!(LogFormat::from_header_line(record), None);
        assert_eq!(LogFormat::from_header_line(""), None);
    }

    #[test]
    fn header_line_with_a_field_aws_added_later() {
        let header = "version interface-id srcaddr dstaddr action log-status some-new-field";
        let format = LogFormat::from_header_line(header).expect("a header");
        assert_eq!(format.fields()[6], Field::Other("some-new-field".into()));
        assert_eq!(LogFormat::from_header_line("ingress egress"), None);
        assert_eq!(LogFormat::from_header_line("2 eni-1 - NODATA"), None);
    }

    #[test]
    fn names_with_underscores_are_the_same_fields() {
        let dashed = LogFormat::parse("interface-id tcp-flags log-status").unwrap();
        let underscored = LogFormat::parse("${interface_id} ${tcp_flags} ${log_status}").unwrap();
        assert_eq!(dashed, underscored);
        assert_eq!(
            LogFormat::from_header_line("version interface_id srcaddr pkt_srcaddr"),
            LogFormat::parse("version interface-id srcaddr pkt-srcaddr").ok()
        );
    }

    #[test]
    fn a_typo_names_the_nearest_known_field() {
        let format = LogFormat::parse(
            "interface-id srcaddr dstaddr srcport dstport protocol action tcp_flag lorem-ipsum-field",
        )
        .unwrap();
        let warnings = format.warnings(false);
        assert_eq!(
            warnings,
            [
                FormatWarning::Misspelled {
                    name: "tcp_flag".into(),
                    nearest: "tcp-flags"
                },
                FormatWarning::Unknown {
                    name: "lorem-ipsum-field".into()
                },
            ]
        );
        assert!(
            warnings[0]
                .to_string()
                .starts_with("`tcp_flag`: did you mean `tcp-flags`?")
        );
    }

    #[test]
    fn a_format_lacking_session_fields_says_which() {
        let format = LogFormat::parse("version srcaddr dstaddr bytes").unwrap();
        assert_eq!(
            format.warnings(false),
            [FormatWarning::LacksSessionFields {
                missing: vec!["interface-id", "srcport", "dstport", "protocol", "action"]
            }]
        );
        // A log stream names the interface: then only the rest is missing.
        assert_eq!(
            format.warnings(true),
            [FormatWarning::LacksSessionFields {
                missing: vec!["srcport", "dstport", "protocol", "action"]
            }]
        );
        assert_eq!(LogFormat::default_v2().warnings(false), []);
    }

    #[test]
    fn every_known_name_round_trips() {
        for (name, field) in KNOWN_FIELDS {
            assert_eq!(Field::from_name(name), *field);
            assert_eq!(field.name(), *name);
        }
    }
}
