//! The `model` field of a `multipart/form-data` body (OpenAI's audio,
//! image and file uploads), read strictly: anything multipart parsers are
//! known to read differently (a preamble, folded or unusual part headers,
//! `name*=`, escapes in names, a repeated `model`, LF-only lines) names no
//! model for certain.

use crate::scope::model::Named;

const UNREADABLE: &str =
    "the multipart/form-data body is not in the plain form the check reads for certain";

/// The boundary of a `multipart/form-data` content type, if it has exactly
/// one valid boundary parameter.
pub(crate) fn boundary(content_type: &str) -> Option<&str> {
    let mut found = None;
    for param in content_type.split(';').skip(1) {
        let (name, value) = param.split_once('=')?;
        // Fields are decoded with the request's charset by some servers
        // (Starlette): only UTF-8, which the check reads, is plain.
        if name.trim().eq_ignore_ascii_case("charset") {
            if !value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8") {
                return None;
            }
            continue;
        }
        if !name.trim().eq_ignore_ascii_case("boundary") {
            continue;
        }
        if found.is_some() {
            return None;
        }
        let value = value.trim();
        let value = match value.strip_prefix('"') {
            Some(quoted) => quoted.strip_suffix('"')?,
            None => value,
        };
        // RFC 2046 §5.1.1: 1 to 70 characters of a small set, not ending
        // in a space.
        let ok = (1..=70).contains(&value.len())
            && !value.ends_with(' ')
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&b));
        if !ok {
            return None;
        }
        found = Some(value);
    }
    found
}

/// What the body says of its model.
pub(crate) fn model(boundary: &str, body: &[u8]) -> Named<'static> {
    match parse(boundary.as_bytes(), body) {
        Some(named) => named,
        None => Named::Unreadable(UNREADABLE),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `None`: not in the plain form.
fn parse(boundary: &[u8], body: &[u8]) -> Option<Named<'static>> {
    let delimiter = [b"--", boundary].concat();
    // No preamble: the body starts with the first delimiter.
    let mut rest = body.strip_prefix(delimiter.as_slice())?;
    let next_delimiter = [b"\r\n--", boundary].concat();
    let mut found = Named::None;
    loop {
        if let Some(after) = rest.strip_prefix(b"--") {
            // The close delimiter, then at most a line break.
            return (after.is_empty() || after == b"\r\n").then_some(found);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let end = find(rest, &next_delimiter)?;
        let (part, after) = rest.split_at(end);
        rest = &after[2 + delimiter.len()..];
        let head_end = find(part, b"\r\n\r\n")?;
        let (head, content) = (&part[..head_end], &part[head_end + 4..]);
        let (name, has_filename) = part_name(head)?;
        if !name.eq_ignore_ascii_case("model") {
            continue;
        }
        if has_filename || !matches!(found, Named::None) {
            return None;
        }
        let value = std::str::from_utf8(content).ok()?;
        if value.is_empty() || value.contains(['\r', '\n']) {
            return None;
        }
        found = Named::Model(value.to_owned().into());
    }
}

/// The field name of a part and whether it has a filename, from its
/// headers: exactly one `Content-Disposition: form-data; name="..."`,
/// optionally a `Content-Type`, nothing else.
fn part_name(head: &[u8]) -> Option<(&str, bool)> {
    let head = std::str::from_utf8(head).ok()?;
    let mut disposition = None;
    let mut content_type = false;
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) || line.contains('\n') {
            return None;
        }
        let (name, value) = line.split_once(':')?;
        if name.eq_ignore_ascii_case("content-disposition") && disposition.is_none() {
            disposition = Some(value.trim());
        } else if name.eq_ignore_ascii_case("content-type") && !content_type {
            // A part decoded with another charset is another string.
            let lower = value.to_ascii_lowercase();
            if lower.contains("charset")
                && !lower.contains("charset=utf-8")
                && !lower.contains("charset=\"utf-8\"")
            {
                return None;
            }
            content_type = true;
        } else {
            return None;
        }
    }
    let mut params = disposition?.split(';');
    if !params.next()?.trim().eq_ignore_ascii_case("form-data") {
        return None;
    }
    let (mut name, mut filename) = (None, false);
    for param in params {
        let (key, value) = param.split_once('=')?;
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        match key.trim().to_ascii_lowercase().as_str() {
            "name" if name.is_none() => name = Some(value),
            "filename" if !filename => filename = true,
            _ => return None,
        }
    }
    let name = name?;
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"\\%\"".contains(&b));
    plain.then_some((name, filename))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(parts: &[(&str, &str)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (head, content) in parts {
            body.extend_from_slice(format!("--XyZ\r\n{head}\r\n\r\n{content}\r\n").as_bytes());
        }
        body.extend_from_slice(b"--XyZ--\r\n");
        body
    }

    #[test]
    fn boundaries() {
        assert_eq!(boundary("multipart/form-data; boundary=XyZ"), Some("XyZ"));
        assert_eq!(
            boundary("multipart/form-data; boundary=\"a b\""),
            Some("a b")
        );
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(
            boundary("multipart/form-data; boundary=a; boundary=b"),
            None
        );
        assert_eq!(boundary("multipart/form-data; boundary="), None);
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary={}", "x".repeat(71))),
            None
        );
    }

    #[test]
    fn the_model_field() {
        let body = form(&[
            ("Content-Disposition: form-data; name=\"file\"; filename=\"a.mp3\"\r\nContent-Type: audio/mpeg", "\u{1}binary--XyZ"),
            ("Content-Disposition: form-data; name=\"model\"", "whisper-1"),
        ]);
        assert_eq!(model("XyZ", &body), Named::Model("whisper-1".into()));
        let none = form(&[("Content-Disposition: form-data; name=\"purpose\"", "batch")]);
        assert_eq!(model("XyZ", &none), Named::None);
        assert_eq!(model("XyZ", b"--XyZ--"), Named::None);
    }

    #[test]
    fn forms_parsers_read_differently_are_unreadable() {
        let model_part = (
            "Content-Disposition: form-data; name=\"model\"",
            "whisper-1",
        );
        let cases: Vec<Vec<u8>> = vec![
            form(&[model_part, model_part]),
            form(&[model_part, ("Content-Disposition: form-data; name=\"MODEL\"", "tts-1")]),
            form(&[("Content-Disposition: form-data; name*=UTF-8''model", "whisper-1")]),
            form(&[("Content-Disposition: form-data; name=\"mod\\el\"", "whisper-1")]),
            form(&[("Content-Disposition: form-data; name=\"model\"; filename=\"m\"", "x")]),
            form(&[("Content-Disposition: form-data;\r\n name=\"model\"", "x")]),
            form(&[("Content-Disposition: form-data; name=\"model\"\r\nContent-Transfer-Encoding: base64", "d2hpc3Blcg==")]),
            form(&[("Content-Disposition: form-data; name=\"model\"", "a\r\nb")]),
            form(&[("Content-Disposition: form-data; name=\"model\"\r\nContent-Type: text/plain; charset=utf-16", "x")]),
            [b"preamble\r\n".as_slice(), &form(&[model_part])].concat(),
            String::from_utf8(form(&[model_part])).unwrap().replace("\r\n", "\n").into_bytes(),
            form(&[model_part])[..30].to_vec(),
            [form(&[model_part]).as_slice(), b"epilogue"].concat(),
        ];
        for body in cases {
            assert!(
                matches!(model("XyZ", &body), Named::Unreadable(_)),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
    }
}
