//! What the Slack app says, as Block Kit JSON: an answer becomes `section` blocks of mrkdwn
//! (split to stay under Slack's 3,000-character limit per text object) and a `context` block
//! citing the run and the figures the answer used; short notices (usage, "working on it",
//! failures) are plain text.
//!
//! Every piece of text, the answer included, is escaped as Slack asks (`&`, `<`, `>` become
//! `&amp;`, `&lt;`, `&gt;`), so an answer can never turn into a mention (`<!channel>`) or a
//! link Slack would follow. Splitting happens on the raw text, measuring the escaped length,
//! so an entity is never cut in half.

use serde_json::{Value, json};

use crate::ask::Answer;

/// Longest text in one Block Kit text object, characters (Slack's limit).
pub const MAX_TEXT_CHARS: usize = 3000;
/// Most blocks in one message (Slack's limit).
pub const MAX_BLOCKS: usize = 50;

/// `text` with `&`, `<` and `>` escaped as Slack's mrkdwn requires.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

fn escaped_len(c: char) -> usize {
    match c {
        '&' => 5,
        '<' | '>' => 4,
        _ => 1,
    }
}

/// `text` escaped and cut into pieces of at most `limit` characters each, at the last
/// whitespace before the limit when there is one (mid-word only for a word longer than the
/// limit); each piece is trimmed and none is empty. `limit` must allow one escaped character
/// (at least 5).
pub fn split_escaped(text: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(5);
    let mut pieces = Vec::new();
    let mut current: Vec<char> = Vec::new();
    let mut len = 0;
    let flush = |chars: &[char], pieces: &mut Vec<String>| {
        let raw: String = chars.iter().collect();
        let piece = escape(raw.trim());
        if !piece.is_empty() {
            pieces.push(piece);
        }
    };
    for c in text.chars() {
        let width = escaped_len(c);
        while len + width > limit && !current.is_empty() {
            let cut = current
                .iter()
                .rposition(|c| c.is_whitespace())
                .filter(|&i| i > 0)
                .map_or(current.len(), |i| i + 1);
            let rest = current.split_off(cut);
            flush(&current, &mut pieces);
            len = rest.iter().map(|&c| escaped_len(c)).sum();
            current = rest;
        }
        current.push(c);
        len += width;
    }
    flush(&current, &mut pieces);
    pieces
}

/// The blocks of an answer about run `run_id`: its text in sections, then a context block
/// citing the run, who answered and the figures used (the list cut to fit Slack's limit).
/// The run is cited by id, never by the server path the answer records.
pub fn answer_blocks(answer: &Answer, run_id: &str) -> Vec<Value> {
    let mut sections = split_escaped(&answer.text, MAX_TEXT_CHARS);
    if sections.is_empty() {
        sections.push("(no answer text)".to_string());
    }
    let room = MAX_BLOCKS - 1;
    if sections.len() > room {
        sections.truncate(room - 1);
        sections.push("… (the answer is too long for one Slack message; ask the API or the web chat for the rest)".to_string());
    }
    let mut blocks: Vec<Value> = sections
        .into_iter()
        .map(|text| json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}))
        .collect();
    let mut elements = vec![json!({
        "type": "mrkdwn",
        "text": format!("Run `{}` · answered by {}", escape(run_id), escape(&answer.answerer)),
    })];
    if !answer.figures.is_empty() {
        elements.push(json!({"type": "mrkdwn", "text": figures_line(answer)}));
    }
    blocks.push(json!({"type": "context", "elements": elements}));
    blocks
}

/// `Figures: `key` = value · ...`, as many as fit in one text object.
fn figures_line(answer: &Answer) -> String {
    let mut line = String::from("Figures:");
    for (i, figure) in answer.figures.iter().enumerate() {
        let item = format!(
            "{} `{}` = {}",
            if i == 0 { "" } else { " ·" },
            escape(&figure.key),
            escape(&figure.display)
        );
        let left = answer.figures.len() - i;
        let tail = format!(" · and {left} more");
        if line.chars().count() + item.chars().count() + tail.chars().count() > MAX_TEXT_CHARS {
            line.push_str(&tail);
            return line;
        }
        line.push_str(&item);
    }
    line
}

/// The notification text shown where blocks cannot be (the first piece of the answer).
pub fn fallback_text(answer: &Answer) -> String {
    split_escaped(&answer.text, MAX_TEXT_CHARS)
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// A plain notice (escaped) that only the asker sees, as a slash command reply.
pub fn ephemeral(text: &str) -> Value {
    json!({"response_type": "ephemeral", "text": escape(text)})
}

/// The usage notice for a slash command `command` sent without a question.
pub fn usage(command: &str) -> String {
    let command = if command.trim().is_empty() {
        "/segments"
    } else {
        command.trim()
    };
    format!(
        "Ask a question about your customer segments, for example: {command} which segment is the largest?"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unescape(s: &str) -> String {
        s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    }

    #[test]
    fn slack_control_characters_are_escaped() {
        assert_eq!(
            escape("<!channel> R&D > 3 < 4"),
            "&lt;!channel&gt; R&amp;D &gt; 3 &lt; 4"
        );
        assert_eq!(split_escaped("a&b", 3000), vec!["a&amp;b"]);
    }

    #[test]
    fn long_text_splits_at_whitespace_within_the_limit_without_cutting_entities() {
        let text = "R&D <growth> segment ".repeat(400);
        let pieces = split_escaped(&text, MAX_TEXT_CHARS);
        assert!(pieces.len() > 1);
        for piece in &pieces {
            assert!(piece.chars().count() <= MAX_TEXT_CHARS, "{}", piece.len());
            let words = unescape(piece);
            assert!(
                words
                    .split_whitespace()
                    .all(|w| ["R&D", "<growth>", "segment"].contains(&w)),
                "cut at a word boundary"
            );
            assert_eq!(escape(&unescape(piece)), *piece, "no entity cut in half");
        }
        let joined: Vec<String> = pieces.iter().map(|p| unescape(p)).collect();
        assert_eq!(joined.join(" "), text.trim());
    }

    #[test]
    fn a_word_longer_than_the_limit_is_cut_between_characters() {
        let text = format!("x {}", "&".repeat(10));
        let pieces = split_escaped(&text, 12);
        assert_eq!(
            pieces,
            vec![
                "x",
                "&amp;&amp;",
                "&amp;&amp;",
                "&amp;&amp;",
                "&amp;&amp;",
                "&amp;&amp;"
            ]
        );
        assert!(split_escaped("   ", 12).is_empty());
    }
}
