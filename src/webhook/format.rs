//! The bodies each format sends, rendered from the stored `STANDARD` payload at send time.

use serde_json::{Value, json};

use crate::entity::WebhookFormat;

pub fn render(format: WebhookFormat, payload: &Value) -> Value {
    match format {
        WebhookFormat::Standard => payload.clone(),
        WebhookFormat::Slack => slack(payload),
        WebhookFormat::Teams => teams(payload),
    }
}

/// What a chat message says: a headline and the incident's facts.
struct Summary {
    headline: String,
    facts: Vec<(&'static str, String)>,
    link: Option<String>,
}

fn summary(payload: &Value) -> Summary {
    let kind = payload["type"].as_str().unwrap_or("event");
    let incident = &payload["data"]["incident"];
    if incident.is_null() {
        return Summary {
            headline: format!("incidentd: {kind}: this endpoint receives incidentd's messages"),
            facts: vec![],
            link: None,
        };
    }
    let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
    let title = text(&incident["title"]);
    let what = match kind {
        "incident.created" => "Incident declared".to_string(),
        "incident.updated" => "Incident updated".to_string(),
        "incident.status_changed" => format!("Incident now {}", text(&incident["status"])),
        "incident.timeline_event_added" => "Timeline event added".to_string(),
        "postmortem.created" => "Postmortem started".to_string(),
        "postmortem.updated" => "Postmortem updated".to_string(),
        other => other.to_string(),
    };
    let mut facts = vec![
        ("Incident", title.clone()),
        ("Severity", text(&incident["severity"])),
        ("Status", text(&incident["status"])),
    ];
    if let Some(content) = payload["data"]["event"]["content"].as_str() {
        facts.push(("Event", content.chars().take(500).collect()));
    }
    Summary {
        headline: format!("{what}: {title}"),
        facts,
        link: incident["url"].as_str().map(str::to_string),
    }
}

/// A Slack incoming-webhook message: `text` (the notification's words) and `blocks`.
fn slack(payload: &Value) -> Value {
    let s = summary(payload);
    let escape = |t: &str| {
        t.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut blocks = vec![json!({
        "type": "section",
        "text": { "type": "mrkdwn", "text": format!("*{}*", escape(&s.headline)) },
    })];
    if !s.facts.is_empty() {
        blocks.push(json!({
            "type": "section",
            "fields": s.facts.iter().map(|(k, v)| json!({
                "type": "mrkdwn", "text": format!("*{k}*\n{}", escape(v)),
            })).collect::<Vec<_>>(),
        }));
    }
    if let Some(link) = &s.link {
        blocks.push(json!({
            "type": "actions",
            "elements": [{
                "type": "button",
                "text": { "type": "plain_text", "text": "Open in the desk" },
                "url": link,
            }],
        }));
    }
    let text = match &s.link {
        Some(link) => format!("{} <{}|open>", escape(&s.headline), link),
        None => escape(&s.headline),
    };
    json!({ "text": text, "blocks": blocks })
}

/// A message for a Teams workflow webhook: one Adaptive Card.
fn teams(payload: &Value) -> Value {
    let s = summary(payload);
    let mut body = vec![json!({
        "type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true, "text": s.headline,
    })];
    if !s.facts.is_empty() {
        body.push(json!({
            "type": "FactSet",
            "facts": s.facts.iter().map(|(k, v)| json!({ "title": k, "value": v })).collect::<Vec<_>>(),
        }));
    }
    let mut content = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    });
    if let Some(link) = &s.link {
        content["actions"] =
            json!([{ "type": "Action.OpenUrl", "title": "Open in the desk", "url": link }]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": content,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        json!({
            "type": "incident.status_changed",
            "timestamp": "2026-12-03T10:00:00Z",
            "data": {
                "incident": { "id": "i", "title": "DB <down>", "status": "MITIGATING", "severity": "SEV1",
                              "url": "https://desk.example/desk/incidents/i" },
                "sequence": 3,
            },
        })
    }

    #[test]
    fn slack_names_the_incident_severity_status_and_link() {
        let body = render(WebhookFormat::Slack, &sample());
        let text = body.to_string();
        assert!(body["text"].as_str().unwrap().contains("DB &lt;down&gt;"));
        for needle in [
            "SEV1",
            "MITIGATING",
            "https://desk.example/desk/incidents/i",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        assert!(body["blocks"].as_array().unwrap().len() >= 2);
    }

    #[test]
    fn teams_is_an_adaptive_card_message() {
        let body = render(WebhookFormat::Teams, &sample());
        assert_eq!(body["type"], "message");
        let attachment = &body["attachments"][0];
        assert_eq!(
            attachment["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(attachment["content"]["type"], "AdaptiveCard");
        assert!(attachment["content"].to_string().contains("SEV1"));
        assert_eq!(render(WebhookFormat::Standard, &sample()), sample());
    }
}
