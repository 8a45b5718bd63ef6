//! Twisted's endpoint-string tokenizer (`_tokenize`/`_parse` in `twisted/internet/endpoints.py`),
//! with byte positions, Python-style argument binding, value parsers and escaping for `Display`.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::EndpointParseError as E;
use crate::address::{UnixAddr, UNIX_PATH_MAX};

/// One string of an endpoint description, unescaped, with where it starts in the input.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    /// The unescaped text.
    pub text: String,
    /// Byte offset of its first character in the whole description.
    pub pos: usize,
    /// The whole token was one `[...]` group (brackets kept in `text`).
    pub bracketed: bool,
    /// Its first character was written escaped (`\@name` is a path, not an abstract name).
    pub first_escaped: bool,
}

/// A `:`-separated argument: positional (`80`) or keyword (`interface=127.0.0.1`).
#[derive(Debug)]
pub(crate) enum Item {
    Positional(Token),
    Keyword(Token, Token),
}

/// Splits `input` (the part after `TYPE:`, which starts at byte `base` of the description) as
/// Twisted's `_tokenize` and `_parse` do: `:` separates arguments, the first `=` of an argument
/// separates key from value (later `=` are literal), `\` makes the next character literal. With
/// `brackets`, a token starting with an unescaped `[` runs to its `]` with colons literal
/// (twisted#8035: `interface=[::1]`).
pub(crate) fn split(input: &str, base: usize, brackets: bool) -> Result<Vec<Item>, E> {
    let mut items = Vec::new();
    let mut group: Vec<Token> = Vec::new();
    let mut cur = new_token(base);
    let mut after_equals = false;
    let mut chars = input.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let at = base + i;
        if cur.text.is_empty() && !cur.first_escaped && !cur.bracketed && brackets && c == '[' {
            cur.pos = at;
            cur.text.push('[');
            loop {
                match chars.next() {
                    None => return Err(E::UnclosedBracket { position: at }),
                    Some((j, '\\')) => match chars.next() {
                        Some((_, n)) => cur.text.push(n),
                        None => return Err(E::TrailingBackslash { position: base + j }),
                    },
                    Some((_, ']')) => {
                        cur.text.push(']');
                        break;
                    }
                    Some((_, n)) => cur.text.push(n),
                }
            }
            cur.bracketed = true;
            continue;
        }
        if c == ':' || (c == '=' && !after_equals) {
            group.push(std::mem::replace(&mut cur, new_token(at + 1)));
            if c == ':' {
                items.push(close_group(std::mem::take(&mut group)));
                after_equals = false;
            } else {
                after_equals = true;
            }
            continue;
        }
        if cur.text.is_empty() {
            cur.pos = at;
        }
        if c == '\\' {
            match chars.next() {
                Some((_, n)) => {
                    if cur.text.is_empty() {
                        cur.first_escaped = true;
                    }
                    cur.bracketed = false;
                    cur.text.push(n);
                }
                None => return Err(E::TrailingBackslash { position: at }),
            }
        } else {
            // Text after a `[...]` group: the token is no longer just the group.
            cur.bracketed = false;
            cur.text.push(c);
        }
    }
    group.push(cur);
    items.push(close_group(group));
    Ok(items)
}

fn new_token(pos: usize) -> Token {
    Token { text: String::new(), pos, bracketed: false, first_escaped: false }
}

fn close_group(mut group: Vec<Token>) -> Item {
    if group.len() == 2 {
        let value = group.pop().expect("two tokens");
        let key = group.pop().expect("two tokens");
        Item::Keyword(key, value)
    } else {
        Item::Positional(group.pop().expect("a group has at least one token"))
    }
}

/// One parameter of an endpoint type, as in Twisted's parser signature.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Param {
    /// Twisted's keyword, and other accepted spellings after it.
    pub names: &'static [&'static str],
    /// Torsion supports it (Twisted's others are rejected as [`E::UnsupportedKey`]).
    pub supported: bool,
}

/// A supported parameter.
pub(crate) const fn p(names: &'static [&'static str]) -> Param {
    Param { names, supported: true }
}

/// A parameter Twisted has and torsion does not support.
pub(crate) const fn unsupported(names: &'static [&'static str]) -> Param {
    Param { names, supported: false }
}

/// Binds arguments to parameters as Python binds a call: positionals in order (at most
/// `max_positional`), then keywords by name; a parameter given twice is a duplicate key. Every
/// value must be non-empty.
pub(crate) fn bind(
    items: Vec<Item>,
    params: &[Param],
    max_positional: usize,
    endpoint: &'static str,
    input: &str,
) -> Result<Vec<Option<Token>>, E> {
    let mut bound: Vec<Option<Token>> = vec![None; params.len()];
    let mut next_positional = 0;
    for item in items {
        let (index, value) = match item {
            Item::Positional(value) => {
                if next_positional >= max_positional.min(params.len()) {
                    return Err(E::TooManyArguments { endpoint, value: value.text, position: value.pos });
                }
                next_positional += 1;
                (next_positional - 1, value)
            }
            Item::Keyword(key, value) => {
                let Some(index) = params.iter().position(|p| p.names.contains(&key.text.as_str())) else {
                    return Err(E::UnknownKey { endpoint, key: key.text, position: key.pos });
                };
                if bound[index].is_some() {
                    return Err(E::DuplicateKey { key: params[index].names[0], position: key.pos });
                }
                (index, value)
            }
        };
        let name = params[index].names[0];
        if !params[index].supported {
            return Err(E::UnsupportedKey { endpoint, key: name, position: value.pos });
        }
        if bound[index].is_some() {
            return Err(E::DuplicateKey { key: name, position: value.pos });
        }
        if value.text.is_empty() {
            if input.as_bytes().get(value.pos) == Some(&b':')
                && matches!(name, "interface" | "bindAddress" | "host")
            {
                return Err(E::UnescapedColon { field: name, position: value.pos });
            }
            return Err(E::EmptyValue { field: name, position: value.pos });
        }
        bound[index] = Some(value);
    }
    Ok(bound)
}

/// A required argument, or [`E::MissingKey`] positioned at the end of the description.
pub(crate) fn required(tok: Option<Token>, field: &'static str, input: &str) -> Result<Token, E> {
    tok.ok_or(E::MissingKey { field, position: input.len() })
}

/// A port number: decimal digits only, `min..=65535`.
pub(crate) fn port(tok: &Token, field: &'static str, min: u16) -> Result<u16, E> {
    let bad = || E::BadPort { field, value: tok.text.clone(), position: tok.pos, min };
    if !tok.text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match tok.text.parse::<u16>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(bad()),
    }
}

/// An IP literal; `[...]` brackets are removed (they must hold an IPv6 address).
pub(crate) fn ip(tok: &Token, field: &'static str) -> Result<IpAddr, E> {
    let bad = || E::BadIp { field, value: tok.text.clone(), position: tok.pos };
    if tok.bracketed {
        let inner = &tok.text[1..tok.text.len() - 1];
        return inner.parse::<std::net::Ipv6Addr>().map(IpAddr::V6).map_err(|_| bad());
    }
    tok.text.parse::<IpAddr>().map_err(|_| bad())
}

/// A decimal number (backlog, systemd index): ASCII digits only, in range of `T`.
pub(crate) fn number<T: std::str::FromStr>(tok: &Token, field: &'static str) -> Result<T, E> {
    if !tok.text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(E::BadNumber { field, value: tok.text.clone(), position: tok.pos });
    }
    tok.text.parse().map_err(|_| E::BadNumber { field, value: tok.text.clone(), position: tok.pos })
}

/// A file mode in octal, as Twisted's `int(mode, 8)`, at most `7777`.
pub(crate) fn mode(tok: &Token) -> Result<u32, E> {
    let bad = || E::BadMode { value: tok.text.clone(), position: tok.pos };
    if !tok.text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(bad());
    }
    match u32::from_str_radix(&tok.text, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(bad()),
    }
}

/// `0` or `1` (Twisted's `bool(int(value))`, without other integers).
pub(crate) fn boolean(tok: &Token, field: &'static str) -> Result<bool, E> {
    match tok.text.as_str() {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(E::BadBoolean { field, value: tok.text.clone(), position: tok.pos }),
    }
}

/// Seconds: `30`, or with a decimal fraction of at most 9 digits (`2.5`).
pub(crate) fn seconds(tok: &Token, field: &'static str) -> Result<Duration, E> {
    let bad = || E::BadNumber { field, value: tok.text.clone(), position: tok.pos };
    let (whole, frac) = match tok.text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (tok.text.as_str(), None),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let secs: u64 = whole.parse().map_err(|_| bad())?;
    let nanos = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            f.parse::<u32>().map_err(|_| bad())? * 10u32.pow(9 - f.len() as u32)
        }
        Some(_) => return Err(bad()),
    };
    Ok(Duration::new(secs, nanos))
}

/// A file path (no NUL).
pub(crate) fn path(tok: &Token, field: &'static str) -> Result<PathBuf, E> {
    if let Some(i) = tok.text.find('\0') {
        return Err(E::NulInPath { field, position: tok.pos + i });
    }
    Ok(PathBuf::from(&tok.text))
}

/// A Unix socket address: `@NAME` (unescaped `@`) is an abstract name, anything else a path; at
/// most [`UNIX_PATH_MAX`] bytes, no NUL.
pub(crate) fn unix_addr(tok: &Token, field: &'static str) -> Result<UnixAddr, E> {
    let abstract_name = if tok.first_escaped { None } else { tok.text.strip_prefix('@') };
    let body = abstract_name.unwrap_or(&tok.text);
    if body.is_empty() {
        return Err(E::EmptyValue { field, position: tok.pos });
    }
    if abstract_name.is_none() {
        if let Some(i) = body.find('\0') {
            return Err(E::NulInPath { field, position: tok.pos + i });
        }
    }
    if body.len() > UNIX_PATH_MAX {
        return Err(E::UnixPathTooLong { field, len: body.len(), max: UNIX_PATH_MAX, position: tok.pos });
    }
    Ok(match abstract_name {
        Some(name) => UnixAddr::Abstract(name.as_bytes().to_vec()),
        None => UnixAddr::Path(PathBuf::from(body)),
    })
}

/// A host name or IP literal for a client; `[V6]` brackets are removed.
pub(crate) fn host(tok: &Token, field: &'static str) -> Result<String, E> {
    if tok.bracketed {
        return ip(tok, field).map(|a| a.to_string());
    }
    if let Some(i) = tok.text.find(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(E::BadHost { field, value: tok.text.clone(), position: tok.pos + i });
    }
    Ok(tok.text.clone())
}

/// Writes `value` escaped for an endpoint description: `\` before `:`, `\` and a leading `[` or
/// `@` (when `escape_at`); and before `=` in a positional argument.
pub(crate) fn escape(out: &mut String, value: &str, positional: bool, escape_at: bool) {
    for (i, c) in value.chars().enumerate() {
        let leading = i == 0 && (c == '[' || (c == '@' && escape_at));
        if c == ':' || c == '\\' || (positional && c == '=') || leading {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Appends `:key=value` with the value escaped.
pub(crate) fn kw(out: &mut String, key: &str, value: &str) {
    let _ = write!(out, ":{key}=");
    escape(out, value, false, false);
}

/// Seconds as the parser reads them: `30` or `2.5`.
pub(crate) fn fmt_seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        let frac = format!("{:09}", d.subsec_nanos());
        format!("{}.{}", d.as_secs(), frac.trim_end_matches('0'))
    }
}
