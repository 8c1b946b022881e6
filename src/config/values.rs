//! Values written as strings (durations, addresses, ports), parsed while
//! the config is deserialized, with what a good one looks like.

use std::fmt::{self, Display};
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::de::Visitor;
use serde::{Deserialize, Deserializer};

use super::DURATION_EXAMPLE;

/// A value written as a string, with what a good one looks like.
pub(super) trait Parse: Sized {
    /// The words after "expected" in a message.
    const EXPECTED: &'static str;
    fn parse(text: &str) -> Option<Self>;
}

impl Parse for Duration {
    const EXPECTED: &'static str = DURATION_EXAMPLE;
    fn parse(text: &str) -> Option<Self> {
        humantime::parse_duration(text).ok()
    }
}

impl Parse for SocketAddr {
    const EXPECTED: &'static str = r#"an address and port like "0.0.0.0:9917""#;
    fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

impl Parse for IpAddr {
    const EXPECTED: &'static str = r#"an IP address like "10.0.7.253""#;
    fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

/// The only `u16` in the config is a port.
impl Parse for u16 {
    const EXPECTED: &'static str = "a port number from 1 to 65535";
    fn parse(text: &str) -> Option<Self> {
        text.parse().ok().filter(|port| *port != 0)
    }
}

/// Deserializes through [`Parse`]. Numbers are read as their text, as
/// environment values always are; any other type fails with what a good
/// value looks like.
struct Parsed<T>(T);

impl<'de, T: Parse> Deserialize<'de> for Parsed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ParsedVisitor(PhantomData))
    }
}

struct ParsedVisitor<T>(PhantomData<T>);

impl<T: Parse> ParsedVisitor<T> {
    fn parse<E: serde::de::Error>(text: &str, shown: impl Display) -> Result<Parsed<T>, E> {
        T::parse(text)
            .map(Parsed)
            .ok_or_else(|| E::custom(format!("expected {}, got {shown}", T::EXPECTED)))
    }
}

impl<T: Parse> Visitor<'_> for ParsedVisitor<T> {
    type Value = Parsed<T>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str(T::EXPECTED)
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Self::parse(text, format_args!("{text:?}"))
    }

    fn visit_i64<E: serde::de::Error>(self, number: i64) -> Result<Self::Value, E> {
        Self::parse(&number.to_string(), number)
    }

    fn visit_u64<E: serde::de::Error>(self, number: u64) -> Result<Self::Value, E> {
        Self::parse(&number.to_string(), number)
    }

    fn visit_f64<E: serde::de::Error>(self, number: f64) -> Result<Self::Value, E> {
        Self::parse(&number.to_string(), number)
    }
}

pub(super) fn parsed<'de, D: Deserializer<'de>, T: Parse>(deserializer: D) -> Result<T, D::Error> {
    Parsed::deserialize(deserializer).map(|Parsed(value)| value)
}

pub(super) fn parsed_list<'de, D: Deserializer<'de>, T: Parse>(
    deserializer: D,
) -> Result<Vec<T>, D::Error> {
    let items = Vec::<Parsed<T>>::deserialize(deserializer)?;
    Ok(items.into_iter().map(|Parsed(value)| value).collect())
}
