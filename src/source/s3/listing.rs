//! The objects under an `s3://bucket/prefix`, listed by date partition:
//! S3 delivery files objects under `…/yyyy/mm/dd/` (or `…/yyyy/mm/dd/hh/`,
//! or Hive-style `year=yyyy/month=mm/day=dd/hour=hh/`), so a time window
//! needs only the partitions it overlaps. A partition is named for when its
//! files were written, which is up to a quarter hour after their records:
//! partitions within [`MARGIN_SECONDS`] of the window are listed too, and
//! the records themselves are filtered exactly by the core.

use super::api::{ApiError, ListedObject, ObjectsApi};

/// Partitions this far outside the window are still listed.
pub const MARGIN_SECONDS: u64 = 3600;

/// A bucket and a key prefix, from `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    pub prefix: String,
}

impl S3Url {
    pub fn parse(text: &str) -> Option<S3Url> {
        let rest = text.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        (!bucket.is_empty()).then(|| S3Url {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

/// Where in a date path a listing is: the parts seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct DatePath {
    year: Option<u32>,
    month: Option<u32>,
    day: Option<u32>,
    hour: Option<u32>,
}

impl DatePath {
    /// The path one folder down, when the folder is the next date part.
    fn descend(self, folder: &str) -> Option<DatePath> {
        let value = folder.split_once('=').map_or(folder, |(_, value)| value);
        let digits = value.len();
        let number: u32 = value
            .parse()
            .ok()
            .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))?;
        let mut next = self;
        match (self.year, self.month, self.day, self.hour) {
            (None, ..) if digits == 4 => next.year = Some(number),
            (Some(_), None, ..) if digits == 2 && (1..=12).contains(&number) => {
                next.month = Some(number);
            }
            (Some(_), Some(_), None, _) if digits == 2 && (1..=31).contains(&number) => {
                next.day = Some(number);
            }
            (Some(_), Some(_), Some(_), None) if digits == 2 && number < 24 => {
                next.hour = Some(number);
            }
            _ => return None,
        }
        Some(next)
    }

    /// The Unix seconds the partition covers, `[start, end)`; `None` above a year.
    fn span(self) -> Option<(u64, u64)> {
        let year = self.year?;
        let day_start = |y: u32, m: u32, d: u32| days_from_civil(y, m, d) * 86_400;
        Some(match (self.month, self.day, self.hour) {
            (None, ..) => (day_start(year, 1, 1), day_start(year + 1, 1, 1)),
            (Some(m), None, _) => {
                let (ny, nm) = if m == 12 {
                    (year + 1, 1)
                } else {
                    (year, m + 1)
                };
                (day_start(year, m, 1), day_start(ny, nm, 1))
            }
            (Some(m), Some(d), None) => {
                let start = day_start(year, m, d);
                (start, start + 86_400)
            }
            (Some(m), Some(d), Some(h)) => {
                let start = day_start(year, m, d) + u64::from(h) * 3600;
                (start, start + 3600)
            }
        })
    }

    /// Whether the partition may hold records of `[since, until]`.
    fn overlaps(self, since: Option<u64>, until: Option<u64>) -> bool {
        let Some((start, end)) = self.span() else {
            return true;
        };
        let after_since = since.is_none_or(|since| end + MARGIN_SECONDS > since);
        let before_until = until.is_none_or(|until| start <= until.saturating_add(MARGIN_SECONDS));
        after_since && before_until
    }
}

/// Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: u32, month: u32, day: u32) -> u64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    u64::try_from(era * 146_097 + doe - 719_468).unwrap_or(0)
}

/// Every object under the URL in the partitions that may hold records of
/// `[since, until]`, in key order; returns them and the listing calls made.
pub async fn list(
    api: &impl ObjectsApi,
    url: &S3Url,
    since: Option<u64>,
    until: Option<u64>,
) -> Result<(Vec<ListedObject>, usize), ApiError> {
    let mut found = Vec::new();
    let mut calls = 0;
    // Depth first, folders in key order: objects come out sorted by key.
    let mut folders = vec![(url.prefix.clone(), DatePath::default())];
    while let Some((prefix, date)) = folders.pop() {
        let mut continuation: Option<String> = None;
        let mut here = Vec::new();
        let mut below = Vec::new();
        loop {
            let page = api
                .list_objects(&url.bucket, &prefix, Some("/"), continuation.as_deref())
                .await?;
            calls += 1;
            here.extend(page.objects);
            for sub in page.prefixes {
                let folder = sub[prefix.len()..].trim_end_matches('/');
                let date = match date.descend(folder) {
                    Some(deeper) => deeper,
                    // A folder that is not the next date part: inside a
                    // date, it is not a partition (left out only if the
                    // date already is).
                    None if date.year.is_some() => date,
                    None => DatePath::default(),
                };
                if date.overlaps(since, until) {
                    below.push((sub, date));
                }
            }
            match page.continuation {
                Some(next) => continuation = Some(next),
                None => break,
            }
        }
        found.extend(here);
        folders.extend(below.into_iter().rev());
    }
    found.sort_by(|a, b| a.key.cmp(&b.key));
    Ok((found, calls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            S3Url::parse("s3://logs/AWSLogs/1/"),
            Some(S3Url {
                bucket: "logs".into(),
                prefix: "AWSLogs/1/".into()
            })
        );
        assert_eq!(S3Url::parse("s3://logs").unwrap().prefix, "");
        assert_eq!(S3Url::parse("s3:///x"), None);
        assert_eq!(S3Url::parse("/tmp/x"), None);
    }

    #[test]
    fn date_folders_in_both_spellings() {
        let path = DatePath::default()
            .descend("2024")
            .and_then(|p| p.descend("01"))
            .and_then(|p| p.descend("05"))
            .unwrap();
        assert_eq!(path.span(), Some((1_704_412_800, 1_704_499_200)));
        let hive = DatePath::default()
            .descend("year=2024")
            .and_then(|p| p.descend("month=01"))
            .and_then(|p| p.descend("day=05"))
            .and_then(|p| p.descend("hour=10"))
            .unwrap();
        assert_eq!(hive.span(), Some((1_704_448_800, 1_704_452_400)));
        // Account ids and regions are not dates.
        assert_eq!(DatePath::default().descend("123456789012"), None);
        assert_eq!(DatePath::default().descend("us-east-1"), None);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }

    #[test]
    fn only_partitions_near_the_window() {
        let day = DatePath::default()
            .descend("2024")
            .and_then(|p| p.descend("01"))
            .and_then(|p| p.descend("05"))
            .unwrap();
        // 2024-01-05 is [1_704_412_800, 1_704_499_200).
        assert!(day.overlaps(None, None));
        assert!(day.overlaps(Some(1_704_450_000), None));
        assert!(
            day.overlaps(Some(1_704_499_200 + 1000), None),
            "within the margin"
        );
        assert!(!day.overlaps(Some(1_704_499_200 + MARGIN_SECONDS), None));
        assert!(!day.overlaps(None, Some(1_704_412_800 - MARGIN_SECONDS - 1)));
    }
}
