//! How VPC flow logs name their CloudWatch log streams, in one place: one
//! stream per interface, `eni-<id>-all`, or `eni-<id>-accept` and
//! `eni-<id>-reject`. Discovery lists streams by [`INTERFACE_STREAM_PREFIX`],
//! configured interfaces select theirs with [`select_streams`], and the
//! exporter takes an event's interface from its stream with
//! [`interface_of_stream`].

/// The prefix of the streams a VPC flow log writes.
pub const INTERFACE_STREAM_PREFIX: &str = "eni-";

/// What a flow log appends to the interface id.
const STREAM_SUFFIXES: [&str; 3] = ["-all", "-accept", "-reject"];

/// The interface id of a flow-log stream: `eni-0a1b-all` → `eni-0a1b`.
pub fn interface_of_stream(stream: &str) -> &str {
    STREAM_SUFFIXES
        .iter()
        .find_map(|suffix| stream.strip_suffix(suffix))
        .unwrap_or(stream)
}

/// The stream a flow log capturing everything writes for `interface_id`.
pub fn all_stream_of(interface_id: &str) -> String {
    format!("{interface_id}{}", STREAM_SUFFIXES[0])
}

/// Interface streams, those of `interfaces` when any is given, sorted and
/// without duplicates.
pub fn select_streams(all: Vec<String>, interfaces: &[String]) -> Vec<String> {
    let mut streams: Vec<String> = all
        .into_iter()
        .filter(|s| s.starts_with(INTERFACE_STREAM_PREFIX))
        .filter(|s| interfaces.is_empty() || interfaces.iter().any(|id| is_stream_of(s, id)))
        .collect();
    streams.sort();
    streams.dedup();
    streams
}

/// `eni-0a1b-all`, `eni-0a1b-accept`, `eni-0a1b-reject` (and `eni-0a1b`
/// itself) belong to `eni-0a1b`; `eni-0a1b2-all` does not.
pub fn is_stream_of(stream: &str, interface_id: &str) -> bool {
    stream
        .strip_prefix(interface_id)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_interfaces_select_their_streams() {
        let all = [
            "eni-a-accept",
            "eni-a-reject",
            "eni-ab-all",
            "eni-b-all",
            "other",
            "eni-a-accept",
        ]
        .map(String::from)
        .to_vec();
        let selected = select_streams(all.clone(), &["eni-a".into(), "eni-c".into()]);
        assert_eq!(selected, ["eni-a-accept", "eni-a-reject"]);
        assert_eq!(select_streams(all, &[]).len(), 4, "every eni- stream once");
    }

    #[test]
    fn interface_of_a_stream() {
        assert_eq!(interface_of_stream("eni-a-accept"), "eni-a");
        assert_eq!(interface_of_stream("eni-0a1b-all"), "eni-0a1b");
        assert_eq!(interface_of_stream("eni-0a1b"), "eni-0a1b");
        assert_eq!(interface_of_stream(&all_stream_of("eni-9")), "eni-9");
        assert!(!is_stream_of("eni-0a1b2-all", "eni-0a1b"));
    }
}
