//! An operation's answer as JSON bytes, exactly as serde_json writes them, in one walk of the
//! value. A listed page is mostly text (≈390 KB for 50 incidents with their events), and
//! serde_json scans a string for what to escape one byte at a time: its `format_escaped_str`
//! was the largest entry of the list's profile. Here a string is scanned eight bytes at a time
//! and copied in runs; only a run's end looks at single bytes.

use async_graphql::{Response, Value};

/// `response` as serde_json's `to_vec` writes it: `data`, then `extensions` and `errors` when
/// there are any (those two are small and rare, and serde_json writes them).
pub fn response_bytes(response: &Response) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(INITIAL_CAPACITY);
    out.extend_from_slice(b"{\"data\":");
    write_value(&mut out, &response.data)?;
    if !response.extensions.is_empty() {
        out.extend_from_slice(b",\"extensions\":");
        serde_json::to_writer(&mut out, &response.extensions)?;
    }
    if !response.errors.is_empty() {
        out.extend_from_slice(b",\"errors\":");
        serde_json::to_writer(&mut out, &response.errors)?;
    }
    out.push(b'}');
    Ok(out)
}

/// Enough for a board or a detail page at once; a list page grows it a few times.
const INITIAL_CAPACITY: usize = 16 * 1024;

fn write_value(out: &mut Vec<u8>, value: &Value) -> serde_json::Result<()> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Boolean(true) => out.extend_from_slice(b"true"),
        Value::Boolean(false) => out.extend_from_slice(b"false"),
        Value::String(s) => write_str(out, s),
        Value::Enum(name) => write_str(out, name),
        Value::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(fields) => {
            out.push(b'{');
            for (i, (key, item)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, key);
                out.push(b':');
                write_value(out, item)?;
            }
            out.push(b'}');
        }
        // Numbers (integers and floats, spelled by itoa and ryu) and bytes, as serde_json.
        Value::Number(_) | Value::Binary(_) => serde_json::to_writer(&mut *out, value)?,
    }
    Ok(())
}

const ONES: u64 = u64::MAX / 255;
const HIGH: u64 = ONES << 7;

/// Whether any of the eight bytes is below 0x20, a quote or a backslash. A byte after one that
/// is may be reported too (the subtraction borrows), never one when none is.
fn needs_escape(chunk: u64) -> bool {
    let control = chunk.wrapping_sub(ONES * 0x20) & !chunk;
    let quote = chunk ^ (ONES * u64::from(b'"'));
    let quote = quote.wrapping_sub(ONES) & !quote;
    let backslash = chunk ^ (ONES * u64::from(b'\\'));
    let backslash = backslash.wrapping_sub(ONES) & !backslash;
    (control | quote | backslash) & HIGH != 0
}

/// A JSON string: quotes, backslashes and control characters escaped as serde_json escapes
/// them (`\b \t \n \f \r`, the others as `\u00xx`); everything else, non-ASCII included, as is.
fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let (mut run, mut i) = (0, 0);
    while i < bytes.len() {
        while let Some(chunk) = bytes.get(i..i + 8) {
            let chunk = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            if needs_escape(chunk) {
                break;
            }
            i += 8;
        }
        let end = (i + 8).min(bytes.len());
        while i < end {
            let byte = bytes[i];
            let escape = ESCAPE[usize::from(byte)];
            if escape != 0 {
                out.extend_from_slice(&bytes[run..i]);
                match escape {
                    b'u' => out.extend_from_slice(&[
                        b'\\',
                        b'u',
                        b'0',
                        b'0',
                        HEX[usize::from(byte >> 4)],
                        HEX[usize::from(byte & 0xf)],
                    ]),
                    _ => out.extend_from_slice(&[b'\\', escape]),
                }
                run = i + 1;
            }
            i += 1;
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

const HEX: [u8; 16] = *b"0123456789abcdef";

/// For each byte, the letter that follows its backslash, or 0 when it is written as is.
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

#[cfg(test)]
mod tests {
    use async_graphql::indexmap::IndexMap;
    use async_graphql::{Name, Pos, ServerError};

    use super::*;

    fn same(response: &Response) {
        let ours = response_bytes(response).unwrap();
        let theirs = serde_json::to_vec(response).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs)
        );
        assert_eq!(ours, theirs);
    }

    /// Every ASCII byte, alone and at each offset of an eight-byte chunk, among plain text and
    /// multi-byte characters.
    fn strings() -> Vec<String> {
        let mut out = vec![String::new(), "plain".into(), "ünïcödé 🔥 中文".into()];
        for byte in 0u8..0x80 {
            let c = char::from(byte);
            out.push(c.to_string());
            for offset in 0..17 {
                let mut s = "x".repeat(offset);
                s.push(c);
                s.push_str("é after and more text to cross a chunk\u{7f}");
                out.push(s);
            }
        }
        out.push("\"quoted\" \\ back\\slash\n\r\t\u{8}\u{c}\u{0}\u{1f}".repeat(5));
        out
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let values = strings().into_iter().map(Value::String).collect::<Vec<_>>();
        same(&Response::new(Value::List(values)));
    }

    #[test]
    fn every_kind_of_value_is_written_as_serde_json_writes_it() {
        let mut object = IndexMap::new();
        for (i, s) in strings().into_iter().take(40).enumerate() {
            object.insert(Name::new(format!("k{i}")), Value::String(s));
        }
        object.insert(Name::new("null"), Value::Null);
        object.insert(Name::new("yes"), Value::Boolean(true));
        object.insert(Name::new("no"), Value::Boolean(false));
        object.insert(Name::new("status"), Value::Enum(Name::new("OPEN")));
        object.insert(Name::new("int"), Value::from(-42));
        object.insert(Name::new("big"), Value::from(u64::MAX));
        object.insert(Name::new("float"), Value::from(0.1 + 0.2));
        object.insert(Name::new("whole"), Value::from(3.0));
        object.insert(Name::new("bytes"), Value::Binary(vec![0, 1, 255].into()));
        object.insert(Name::new("empty"), Value::List(vec![]));
        object.insert(Name::new("nothing"), Value::Object(IndexMap::new()));
        let nested = Value::List(vec![Value::Object(object.clone()), Value::Null]);
        object.insert(Name::new("nested"), nested);
        let mut response = Response::new(Value::Object(object));
        same(&response);

        response.errors.push(
            ServerError::new("a \"failed\" field\n", Some(Pos { line: 1, column: 2 }))
                .with_path(vec![async_graphql::PathSegment::Field("incidents".into())]),
        );
        same(&response);
        response.extensions.insert("cost".into(), Value::from(12));
        same(&response);
        same(&Response::new(Value::Null));
    }
}
