//! Relay-style pagination: `first`/`after`, `last`/`before`, and opaque keyset cursors, which stay
//! correct while rows are inserted because they name a position, not an offset.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::input;
use crate::error::{AppError, AppResult};

pub const MAX_PAGE: u64 = 100;
pub const DEFAULT_PAGE: u64 = 20;

/// A position in a list ordered by (created_at, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeCursor {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

pub trait Cursor: Sized {
    fn encode(&self) -> String;
    fn decode(raw: &str) -> Option<Self>;
}

impl Cursor for TimeCursor {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("t:{}:{}", self.at.timestamp_micros(), self.id))
    }
    /// Only what `encode` could have written: a time within the years an input may name (the
    /// server stores no other), and the exact text `encode` gives for it (no other spelling of
    /// the number or the id, no padding), so a forged cursor never reaches a query.
    fn decode(raw: &str) -> Option<Self> {
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).ok()?).ok()?;
        let rest = text.strip_prefix("t:")?;
        let (micros, id) = rest.split_once(':')?;
        let at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
        let cursor = TimeCursor {
            at: input::instant("cursor", at).ok()?,
            id: id.parse().ok()?,
        };
        (cursor.encode() == raw).then_some(cursor)
    }
}

/// A position in the people directory, ordered by (lowercased name, id); people without a name
/// sort first, under the empty name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameCursor {
    pub name: String,
    pub id: Uuid,
}

impl Cursor for NameCursor {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("n:{}:{}", self.id, self.name))
    }
    /// Only what `encode` could have written: an id as `encode` spells it, and a name no longer
    /// than a stored one lowercased (lowercasing may lengthen it).
    fn decode(raw: &str) -> Option<Self> {
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).ok()?).ok()?;
        let (id, name) = text.strip_prefix("n:")?.split_once(':')?;
        let cursor = NameCursor {
            name: name.to_string(),
            id: id.parse().ok()?,
        };
        (name.chars().count() <= 400 && !name.contains('\0') && cursor.encode() == raw)
            .then_some(cursor)
    }
}

/// A position in an incident's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeqCursor(pub i64);

impl Cursor for SeqCursor {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("s:{}", self.0))
    }
    /// Only what `encode` could have written: a sequence of 0 or more, spelled as `encode` does.
    fn decode(raw: &str) -> Option<Self> {
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).ok()?).ok()?;
        let seq: i64 = text.strip_prefix("s:")?.parse().ok()?;
        let cursor = SeqCursor(seq);
        (seq >= 0 && cursor.encode() == raw).then_some(cursor)
    }
}

/// Parsed pagination arguments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Page<C> {
    pub limit: u64,
    /// `last`/`before`: take from the end of the range.
    pub backward: bool,
    pub after: Option<C>,
    pub before: Option<C>,
}

impl<C: Cursor> Page<C> {
    pub fn parse(
        first: Option<i32>,
        after: Option<&str>,
        last: Option<i32>,
        before: Option<&str>,
    ) -> AppResult<Page<C>> {
        let count = |field: &str, n: i32| -> AppResult<u64> {
            if n < 0 {
                return Err(AppError::bad_input(
                    field,
                    format!("{field} must not be negative"),
                ));
            }
            if n as u64 > MAX_PAGE {
                return Err(AppError::bad_input(
                    field,
                    format!("{field} must be at most {MAX_PAGE}"),
                ));
            }
            Ok(n as u64)
        };
        let cursor = |field: &str, raw: Option<&str>| -> AppResult<Option<C>> {
            raw.map(|r| {
                C::decode(r).ok_or_else(|| {
                    AppError::bad_input(field, format!("{field} is not a valid cursor"))
                })
            })
            .transpose()
        };
        let (limit, backward) = match (first, last) {
            (Some(_), Some(_)) => {
                return Err(AppError::bad_input(
                    "last",
                    "pass either first or last, not both",
                ));
            }
            (Some(n), None) => (count("first", n)?, false),
            (None, Some(n)) => (count("last", n)?, true),
            (None, None) => (DEFAULT_PAGE, false),
        };
        Ok(Page {
            limit,
            backward,
            after: cursor("after", after)?,
            before: cursor("before", before)?,
        })
    }

    /// Rows to fetch: one more than the page, to learn whether another page exists.
    pub fn fetch(&self) -> u64 {
        self.limit + 1
    }
}

/// One page of rows, in display order, and what lies beyond it.
#[derive(Debug, Clone)]
pub struct PageOf<T> {
    pub rows: Vec<T>,
    pub has_previous: bool,
    pub has_next: bool,
}

impl<T> PageOf<T> {
    /// From `fetched` rows in query order (reversed when the page was taken backward).
    pub fn from_fetched<C>(mut fetched: Vec<T>, page: &Page<C>) -> PageOf<T> {
        let more = fetched.len() as u64 > page.limit;
        fetched.truncate(page.limit as usize);
        if page.backward {
            fetched.reverse();
            PageOf {
                rows: fetched,
                has_previous: more,
                has_next: page.before.is_some(),
            }
        } else {
            PageOf {
                rows: fetched,
                has_previous: page.after.is_some(),
                has_next: more,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = TimeCursor {
            at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(TimeCursor::decode(&c.encode()), Some(c));
        assert_eq!(
            SeqCursor::decode(&SeqCursor(42).encode()),
            Some(SeqCursor(42))
        );
        assert_eq!(TimeCursor::decode("not a cursor"), None);
        assert_eq!(SeqCursor::decode(&c.encode()), None);
    }

    #[test]
    fn cursors_the_server_did_not_write_are_refused() {
        let id = Uuid::now_v7();
        let forged = |text: String| URL_SAFE_NO_PAD.encode(text);
        // Out of the years an input may name (PostgreSQL refused this one as out of range).
        assert_eq!(
            TimeCursor::decode(&forged(format!("t:-8000000000000000000:{id}"))),
            None
        );
        assert_eq!(
            TimeCursor::decode(&forged(format!("t:253402300800000000:{id}"))),
            None
        );
        // Other spellings of a valid position.
        assert_eq!(TimeCursor::decode(&forged(format!("t:+1:{id}"))), None);
        assert_eq!(
            TimeCursor::decode(&forged(format!("t:1:{}", id.simple()))),
            None
        );
        assert_eq!(SeqCursor::decode(&forged("s:+1".into())), None);
        assert_eq!(SeqCursor::decode(&forged("s:01".into())), None);
        assert_eq!(SeqCursor::decode(&forged("s:-1".into())), None);
        let valid = SeqCursor(7).encode();
        assert_eq!(SeqCursor::decode(&format!("{valid}=")), None);
        // The edges of the range still decode.
        for micros in [-62_135_596_800_000_000, 253_402_300_799_999_999] {
            let c = TimeCursor {
                at: DateTime::from_timestamp_micros(micros).unwrap(),
                id,
            };
            assert_eq!(TimeCursor::decode(&c.encode()), Some(c));
        }
    }

    #[test]
    fn name_cursors_round_trip_with_any_name() {
        for name in ["", "ada: the first", "é"] {
            let c = NameCursor {
                name: name.into(),
                id: Uuid::now_v7(),
            };
            assert_eq!(NameCursor::decode(&c.encode()), Some(c));
        }
        assert_eq!(NameCursor::decode(&SeqCursor(1).encode()), None);
    }

    #[test]
    fn page_sizes_are_bounded() {
        assert!(Page::<SeqCursor>::parse(Some(101), None, None, None).is_err());
        assert!(Page::<SeqCursor>::parse(Some(-1), None, None, None).is_err());
        assert!(Page::<SeqCursor>::parse(Some(1), None, Some(1), None).is_err());
        assert_eq!(
            Page::<SeqCursor>::parse(None, None, Some(5), None)
                .unwrap()
                .limit,
            5
        );
    }
}
