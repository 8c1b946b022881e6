//! Flow records in JSON, as AWS hands them out of CloudWatch Logs:
//!
//! * `aws logs filter-log-events`: `{"events": [{"logStreamName", "timestamp",
//!   "message", …}], "searchedLogStreams": …}`;
//! * `aws logs get-log-events`: the same without stream names (and
//!   `--query events` prints the bare array);
//! * a subscription payload (what Kinesis and Firehose carry, gzip):
//!   `{"messageType": "DATA_MESSAGE", "logStream", "logEvents": [{"id",
//!   "timestamp", "message"}]}`; `CONTROL_MESSAGE`s are not records.
//!
//! A file may hold one document or many, back to back (Firehose writes
//! payloads without separators). CLI events are fed as they are parsed, so
//! memory is one event, not one document; a subscription payload's events
//! wait for the end of their payload (at most 1 MB, CloudWatch's limit),
//! since its `logStream` and `messageType` may come after them. The message is the record; the
//! event timestamp is its time where the record has none, and the stream
//! name (`eni-…-all`) its interface where the format has no `interface-id`.

use std::fmt;
use std::io::{self, BufReader, Read};

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::Origin;
use crate::flow::{Observer, Pipeline};
use crate::source::cloudwatch::interface_of_stream;

/// Feeds every event of every document in `reader` to the pipeline.
pub fn feed(
    reader: impl Read,
    origin: &Origin,
    pipeline: &mut Pipeline,
    observer: &mut impl Observer,
) -> io::Result<()> {
    let mut feed = Feed {
        pipeline,
        observer,
        default_stream: origin.stream.clone(),
        stream: None,
        control: false,
        depth: 0,
        collecting: false,
        pending: Vec::new(),
    };
    let mut documents = serde_json::Deserializer::from_reader(BufReader::new(reader));
    loop {
        (&mut feed)
            .deserialize(&mut documents)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        // `end` only looks past whitespace: another document follows when
        // it fails.
        if documents.end().is_ok() {
            return Ok(());
        }
    }
}

/// Walks JSON values: documents, their event arrays, events.
struct Feed<'a, O> {
    pipeline: &'a mut Pipeline,
    observer: &'a mut O,
    default_stream: Option<String>,
    /// The current document's `logStream` (subscription payloads).
    stream: Option<String>,
    /// The current document is a `CONTROL_MESSAGE`.
    control: bool,
    depth: usize,
    /// Inside `logEvents`: events wait here for the end of their payload.
    collecting: bool,
    pending: Vec<Event>,
}

struct Event {
    message: String,
    timestamp_ms: Option<i64>,
    stream: Option<String>,
}

impl<O: Observer> Feed<'_, O> {
    fn push(&mut self, event: Event) {
        if self.collecting {
            self.pending.push(event);
            return;
        }
        if self.control {
            return;
        }
        let Event {
            message,
            timestamp_ms,
            stream,
        } = event;
        let stream = stream
            .as_deref()
            .or(self.stream.as_deref())
            .or(self.default_stream.as_deref());
        let interface = stream.map_or("-", interface_of_stream);
        let time = timestamp_ms.and_then(|ms| u64::try_from(ms / 1000).ok());
        self.pipeline
            .push_event(message.as_bytes(), time, interface, self.observer);
    }
}

impl<'de, O: Observer> DeserializeSeed<'de> for &mut Feed<'_, O> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, O: Observer> Visitor<'de> for &mut Feed<'_, O> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CloudWatch Logs events: an object with `events` or `logEvents`, an event with `message`, or an array of them")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(&mut *self)?.is_some() {}
        Ok(())
    }

    /// A document (with an array of events) or one event, told apart by
    /// their keys; anything else in them is skipped.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.depth == 0 {
            self.stream = None;
            self.control = false;
        }
        self.depth += 1;
        let mut message: Option<String> = None;
        let mut timestamp: Option<i64> = None;
        let mut event_stream: Option<String> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "events" => map.next_value_seed(&mut *self)?,
                "logEvents" => {
                    self.collecting = true;
                    let events = map.next_value_seed(&mut *self);
                    self.collecting = false;
                    events?;
                }
                "logStream" => self.stream = map.next_value()?,
                "messageType" => {
                    self.control = map.next_value::<String>()? == "CONTROL_MESSAGE";
                }
                "message" => message = map.next_value()?,
                "timestamp" => timestamp = map.next_value()?,
                "logStreamName" => event_stream = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        self.depth -= 1;
        if let Some(message) = message {
            self.push(Event {
                message,
                timestamp_ms: timestamp,
                stream: event_stream,
            });
        }
        if self.depth == 0 {
            for event in std::mem::take(&mut self.pending) {
                self.push(event);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{FormatChoice, RecordFilter, ServicePorts, Settings, Summary};
    use std::collections::HashMap;

    fn run(json: &str, format: FormatChoice) -> Summary {
        let mut pipeline = Pipeline::new(
            format,
            Settings::default(),
            HashMap::new(),
            RecordFilter::default(),
        );
        let mut summary = Summary::new(ServicePorts::new(&[]), true);
        pipeline.begin_input();
        feed(
            json.as_bytes(),
            &Origin::default(),
            &mut pipeline,
            &mut summary,
        )
        .unwrap();
        pipeline.finish(&mut summary);
        summary
    }

    #[test]
    fn subscription_payloads_back_to_back_and_control_messages() {
        let format =
            FormatChoice::parse("srcaddr dstaddr srcport dstport protocol action").unwrap();
        let payloads = r#"
            {"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"",
             "subscriptionFilters":[],"logEvents":[{"id":"1","timestamp":1700000000000,
             "message":"CWL CONTROL MESSAGE: Checking health of destination Firehose."}]}
            {"messageType":"DATA_MESSAGE","owner":"123456789010","logGroup":"/vpc/flow",
             "logStream":"eni-a-all","subscriptionFilters":["f"],"logEvents":[
               {"id":"2","timestamp":1700000000000,"message":"198.51.100.7 10.0.0.10 40000 22 6 ACCEPT"}]}{"messageType":"DATA_MESSAGE","logStream":"eni-a-all","logEvents":[
               {"id":"3","timestamp":1700000001000,"message":"10.0.0.10 198.51.100.7 22 40000 6 ACCEPT"}]}"#;
        let summary = run(payloads, format);
        assert_eq!((summary.records.ok, summary.records.malformed), (2, 0));
        assert_eq!(summary.sessions.accepted, 1);
        let details = summary.details.unwrap();
        assert_eq!(details[0].interface_id, "eni-a");
    }

    #[test]
    fn cli_output_with_and_without_stream_names() {
        let filtered = r#"{"events":[
            {"logStreamName":"eni-a-all","timestamp":1,"message":"2 123456789010 eni-a 198.51.100.7 10.0.0.10 40000 22 6 1 44 1000 1050 ACCEPT OK","ingestionTime":2,"eventId":"1"},
            {"logStreamName":"eni-a-all","timestamp":1,"message":"2 123456789010 eni-a 10.0.0.10 198.51.100.7 22 40000 6 1 40 1000 1050 ACCEPT OK","ingestionTime":2,"eventId":"2"}],
            "searchedLogStreams":[{"logStreamName":"eni-a-all","searchedCompletely":true}]}"#;
        let summary = run(filtered, FormatChoice::Auto);
        assert_eq!(summary.sessions.accepted, 1);
        let bare = r#"[{"timestamp":1,"message":"2 123456789010 eni-b 198.51.100.8 10.0.1.10 40001 3389 6 1 40 1100 1150 REJECT OK"}]"#;
        let summary = run(bare, FormatChoice::Auto);
        assert_eq!(summary.sessions.rejected_inbound, 1);
    }

    #[test]
    fn broken_json_is_an_error_not_a_silent_stop() {
        let mut pipeline = Pipeline::new(
            FormatChoice::Auto,
            Settings::default(),
            HashMap::new(),
            RecordFilter::default(),
        );
        let mut summary = Summary::new(ServicePorts::new(&[]), false);
        let error = feed(
            &b"{\"events\": [{\"message\": \"2 1\"}"[..],
            &Origin::default(),
            &mut pipeline,
            &mut summary,
        )
        .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}
