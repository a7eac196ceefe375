//! Request bodies of `POST /messages`, the same for the Cloud API and 360dialog.

use messaging_core::{
    Attachment, AttachmentKind, Button, ButtonAction, ButtonSubType, ChannelError, MediaSource,
    Template, TemplatePart, TemplateValue,
};
use serde_json::{Map, Value, json};

/// Longest text body.
pub const MAX_TEXT: usize = 4096;
/// Longest media caption and interactive body.
pub const MAX_CAPTION: usize = 1024;
/// Most reply buttons on one message.
pub const MAX_REPLY_BUTTONS: usize = 3;
/// Longest reply button title.
pub const MAX_BUTTON_TITLE: usize = 20;
/// Longest reply button id.
pub const MAX_BUTTON_ID: usize = 256;
/// Longest `biz_opaque_callback_data`.
pub const MAX_CALLBACK_DATA: usize = 512;

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// The envelope every message shares. A `to` of the form `group:<id>` (the address of a group
/// message, see [`crate::webhook`]) is sent to the group with `recipient_type: group`.
pub(crate) fn envelope(to: &str, kind: &str, callback: Option<&str>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("messaging_product".into(), json!("whatsapp"));
    match to.strip_prefix("group:") {
        Some(group) => {
            m.insert("recipient_type".into(), json!("group"));
            m.insert("to".into(), json!(group));
        }
        None => {
            m.insert("recipient_type".into(), json!("individual"));
            m.insert("to".into(), json!(to));
        }
    }
    m.insert("type".into(), json!(kind));
    if let Some(cb) = callback {
        m.insert("biz_opaque_callback_data".into(), json!(cb));
    }
    m
}

fn media_object(source: &MediaSource) -> Map<String, Value> {
    let mut m = Map::new();
    match source {
        MediaSource::Link(url) => m.insert("link".into(), json!(url.as_str())),
        MediaSource::Id(id) => m.insert("id".into(), json!(id)),
    };
    m
}

/// A text message.
pub(crate) fn text(
    to: &str,
    body: &str,
    preview_url: bool,
    callback: Option<&str>,
) -> Result<Value, ChannelError> {
    if body.trim().is_empty() {
        return Err(ChannelError::invalid_content("empty text"));
    }
    if chars(body) > MAX_TEXT {
        return Err(ChannelError::invalid_content(format!(
            "text of {} characters exceeds WhatsApp's {MAX_TEXT}",
            chars(body)
        )));
    }
    let mut m = envelope(to, "text", callback);
    m.insert(
        "text".into(),
        json!({"preview_url": preview_url, "body": body}),
    );
    Ok(Value::Object(m))
}

/// An image or document message, with an optional caption.
pub(crate) fn media(
    to: &str,
    a: &Attachment,
    caption: Option<&str>,
    callback: Option<&str>,
) -> Result<Value, ChannelError> {
    let kind = match a.kind {
        AttachmentKind::Image => "image",
        AttachmentKind::Document => "document",
        _ => return Err(ChannelError::invalid_content("unsupported attachment kind")),
    };
    let mut obj = media_object(&a.source);
    if let Some(c) = caption.or(a.caption.as_deref()).filter(|c| !c.is_empty()) {
        if chars(c) > MAX_CAPTION {
            return Err(ChannelError::invalid_content(format!(
                "caption exceeds WhatsApp's {MAX_CAPTION} characters"
            )));
        }
        obj.insert("caption".into(), json!(c));
    }
    if a.kind == AttachmentKind::Document
        && let Some(f) = &a.filename
    {
        obj.insert("filename".into(), json!(f));
    }
    let mut m = envelope(to, kind, callback);
    m.insert(kind.into(), Value::Object(obj));
    Ok(Value::Object(m))
}

/// Reply buttons (at most 3), with an optional image or document header.
pub(crate) fn reply_buttons(
    to: &str,
    body: &str,
    buttons: &[(&str, &str)],
    header: Option<&Attachment>,
    callback: Option<&str>,
) -> Result<Value, ChannelError> {
    if body.trim().is_empty() {
        return Err(ChannelError::invalid_content("buttons need a text body"));
    }
    if chars(body) > MAX_CAPTION {
        return Err(ChannelError::invalid_content(format!(
            "text with buttons exceeds WhatsApp's {MAX_CAPTION} characters"
        )));
    }
    if buttons.len() > MAX_REPLY_BUTTONS {
        return Err(ChannelError::invalid_content(format!(
            "{} reply buttons; WhatsApp allows {MAX_REPLY_BUTTONS}",
            buttons.len()
        )));
    }
    let mut seen_titles = Vec::new();
    let mut seen_ids = Vec::new();
    let mut list = Vec::new();
    for (title, id) in buttons {
        if title.trim().is_empty() || chars(title) > MAX_BUTTON_TITLE {
            return Err(ChannelError::invalid_content(format!(
                "button title {title:?} must have 1 to {MAX_BUTTON_TITLE} characters"
            )));
        }
        if id.is_empty() || chars(id) > MAX_BUTTON_ID || id.trim() != *id {
            return Err(ChannelError::invalid_content(format!(
                "button payload {id:?} must have 1 to {MAX_BUTTON_ID} characters and no outer spaces"
            )));
        }
        if seen_titles.contains(title) || seen_ids.contains(id) {
            return Err(ChannelError::invalid_content(
                "button titles and payloads must be unique",
            ));
        }
        seen_titles.push(*title);
        seen_ids.push(*id);
        list.push(json!({"type": "reply", "reply": {"id": id, "title": title}}));
    }
    let mut interactive = Map::new();
    interactive.insert("type".into(), json!("button"));
    if let Some(a) = header {
        let kind = match a.kind {
            AttachmentKind::Document => "document",
            _ => "image",
        };
        let mut obj = media_object(&a.source);
        if a.kind == AttachmentKind::Document
            && let Some(f) = &a.filename
        {
            obj.insert("filename".into(), json!(f));
        }
        interactive.insert(
            "header".into(),
            json!({"type": kind, kind: Value::Object(obj)}),
        );
    }
    interactive.insert("body".into(), json!({"text": body}));
    interactive.insert("action".into(), json!({"buttons": list}));
    let mut m = envelope(to, "interactive", callback);
    m.insert("interactive".into(), Value::Object(interactive));
    Ok(Value::Object(m))
}

/// A call-to-action URL button.
pub(crate) fn cta_url(
    to: &str,
    body: &str,
    title: &str,
    url: &url::Url,
    callback: Option<&str>,
) -> Result<Value, ChannelError> {
    if body.trim().is_empty() || chars(body) > MAX_CAPTION {
        return Err(ChannelError::invalid_content(format!(
            "text with a link button must have 1 to {MAX_CAPTION} characters"
        )));
    }
    if title.trim().is_empty() || chars(title) > MAX_BUTTON_TITLE {
        return Err(ChannelError::invalid_content(format!(
            "button title {title:?} must have 1 to {MAX_BUTTON_TITLE} characters"
        )));
    }
    let mut m = envelope(to, "interactive", callback);
    m.insert(
        "interactive".into(),
        json!({
            "type": "cta_url",
            "body": {"text": body},
            "action": {"name": "cta_url", "parameters": {"display_text": title, "url": url.as_str()}}
        }),
    );
    Ok(Value::Object(m))
}

/// The reply and URL buttons of a content, checked for what WhatsApp can carry.
pub(crate) enum Buttons<'a> {
    None,
    Reply(Vec<(&'a str, &'a str)>),
    Url(&'a str, &'a url::Url),
}

pub(crate) fn classify_buttons(buttons: &[Button]) -> Result<Buttons<'_>, ChannelError> {
    let mut replies = Vec::new();
    let mut urls = Vec::new();
    for b in buttons {
        match &b.action {
            ButtonAction::Reply(p) => replies.push((b.title.as_str(), p.as_str())),
            ButtonAction::Url(u) => urls.push((b.title.as_str(), u)),
            // WhatsApp already knows the number; other actions have no WhatsApp form.
            _ => {}
        }
    }
    match (replies.is_empty(), urls.as_slice()) {
        (true, []) => Ok(Buttons::None),
        (false, []) => Ok(Buttons::Reply(replies)),
        (true, [(t, u)]) => Ok(Buttons::Url(t, u)),
        _ => Err(ChannelError::invalid_content(
            "a WhatsApp message carries either up to 3 reply buttons or one link button",
        )),
    }
}

/// The kind of media a template header takes: from the definition's header format when known,
/// else guessed from the link's extension.
fn header_media_kind(format: Option<&str>, source: &MediaSource) -> &'static str {
    match format.map(str::to_ascii_uppercase).as_deref() {
        Some("DOCUMENT") => return "document",
        Some("VIDEO") => return "video",
        Some("IMAGE") => return "image",
        _ => {}
    }
    if let MediaSource::Link(u) = source {
        let p = u.path().to_ascii_lowercase();
        if p.ends_with(".pdf") || p.ends_with(".doc") || p.ends_with(".docx") {
            return "document";
        }
        if p.ends_with(".mp4") || p.ends_with(".3gp") {
            return "video";
        }
    }
    "image"
}

/// A template message, positional or named parameters, header, body and button components.
pub(crate) fn template(
    to: &str,
    t: &Template,
    header_format: Option<&str>,
    callback: Option<&str>,
) -> Result<Value, ChannelError> {
    crate::templates::check_values(t)?;
    let mut components = Vec::new();
    for c in &t.components {
        let params: Vec<Value> = c
            .parameters
            .iter()
            .map(|p| {
                let mut v = match (&c.part, &p.value) {
                    (
                        TemplatePart::Button {
                            sub_type: ButtonSubType::QuickReply,
                            ..
                        },
                        TemplateValue::Text(s) | TemplateValue::Payload(s),
                    ) => {
                        json!({"type": "payload", "payload": s})
                    }
                    (_, TemplateValue::Text(s) | TemplateValue::Payload(s)) => {
                        json!({"type": "text", "text": s})
                    }
                    (_, TemplateValue::Media(src)) => {
                        let kind = header_media_kind(header_format, src);
                        json!({"type": kind, kind: Value::Object(media_object(src))})
                    }
                };
                if let (Some(name), Value::Object(m)) = (&p.name, &mut v) {
                    m.insert("parameter_name".into(), json!(name));
                }
                v
            })
            .collect();
        let comp = match &c.part {
            TemplatePart::Header => json!({"type": "header", "parameters": params}),
            TemplatePart::Body => json!({"type": "body", "parameters": params}),
            TemplatePart::Button { index, sub_type } => json!({
                "type": "button",
                "sub_type": match sub_type { ButtonSubType::QuickReply => "quick_reply", ButtonSubType::Url => "url" },
                "index": index.to_string(),
                "parameters": params,
            }),
        };
        components.push(comp);
    }
    let mut tpl = Map::new();
    tpl.insert("name".into(), json!(t.name));
    tpl.insert("language".into(), json!({"code": t.language}));
    if !components.is_empty() {
        tpl.insert("components".into(), Value::Array(components));
    }
    let mut m = envelope(to, "template", callback);
    m.insert("template".into(), Value::Object(tpl));
    Ok(Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_core::{TemplateComponent, TemplateParameter};

    #[test]
    fn a_group_address_is_sent_to_the_group() {
        let m = envelope("group:Y2FwaV9ncm91cDox", "text", None);
        assert_eq!(m["recipient_type"], "group");
        assert_eq!(m["to"], "Y2FwaV9ncm91cDox");
        let m = envelope("79990001122", "text", None);
        assert_eq!(m["recipient_type"], "individual");
        assert_eq!(m["to"], "79990001122");
    }

    #[test]
    fn template_body_matches_meta_shape() {
        let t = Template::new("order_update", "en_US")
            .component(TemplateComponent {
                part: TemplatePart::Header,
                parameters: vec![TemplateParameter {
                    name: None,
                    value: TemplateValue::Media(MediaSource::Link(
                        "https://x.example/a.pdf".parse().unwrap(),
                    )),
                }],
            })
            .component(TemplateComponent::body_text(["Jessica"]))
            .component(TemplateComponent {
                part: TemplatePart::Button {
                    index: 0,
                    sub_type: ButtonSubType::QuickReply,
                },
                parameters: vec![TemplateParameter {
                    name: None,
                    value: TemplateValue::Payload("STOP".into()),
                }],
            })
            .component(TemplateComponent {
                part: TemplatePart::Button {
                    index: 1,
                    sub_type: ButtonSubType::Url,
                },
                parameters: vec![TemplateParameter {
                    name: None,
                    value: TemplateValue::Text("order123".into()),
                }],
            });
        let v = template("+16505551234", &t, None, Some("n-1")).unwrap();
        assert_eq!(v["messaging_product"], "whatsapp");
        assert_eq!(v["type"], "template");
        assert_eq!(v["biz_opaque_callback_data"], "n-1");
        assert_eq!(v["template"]["language"]["code"], "en_US");
        let c = &v["template"]["components"];
        assert_eq!(c[0]["parameters"][0]["type"], "document");
        assert_eq!(
            c[0]["parameters"][0]["document"]["link"],
            "https://x.example/a.pdf"
        );
        assert_eq!(
            c[1]["parameters"][0],
            json!({"type": "text", "text": "Jessica"})
        );
        assert_eq!(
            c[2],
            json!({"type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [{"type": "payload", "payload": "STOP"}]})
        );
        assert_eq!(c[3]["sub_type"], "url");
        assert_eq!(c[3]["index"], "1");
        assert_eq!(c[3]["parameters"][0]["text"], "order123");

        let named = Template::new("hello", "en")
            .component(TemplateComponent::body_named([("first_name", "Ann")]));
        let v = template("1", &named, None, None).unwrap();
        assert_eq!(
            v["template"]["components"][0]["parameters"][0]["parameter_name"],
            "first_name"
        );
        assert!(v.get("biz_opaque_callback_data").is_none());
        let bare = template("1", &Template::new("hello", "en"), Some("IMAGE"), None).unwrap();
        assert!(bare["template"].get("components").is_none());
    }

    #[test]
    fn limits_are_checked() {
        assert!(text("1", &"x".repeat(4097), false, None).is_err());
        assert!(text("1", &"я".repeat(4096), false, None).is_ok());
        assert!(text("1", "  ", false, None).is_err());
        let four = [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")];
        assert!(reply_buttons("1", "q", &four, None, None).is_err());
        assert!(reply_buttons("1", "q", &[("x".repeat(21).as_str(), "1")], None, None).is_err());
        assert!(reply_buttons("1", "q", &[("a", "1"), ("a", "2")], None, None).is_err());
        assert!(reply_buttons("1", "q", &[("a", " 1")], None, None).is_err());
        let ok =
            reply_buttons("1", "Придёте?", &[("Да", "yes"), ("Нет", "no")], None, None).unwrap();
        assert_eq!(
            ok["interactive"]["action"]["buttons"][1]["reply"],
            json!({"id": "no", "title": "Нет"})
        );
    }

    #[test]
    fn buttons_are_classified() {
        let url: url::Url = "https://clinic.example/b".parse().unwrap();
        assert!(matches!(classify_buttons(&[]).unwrap(), Buttons::None));
        assert!(matches!(
            classify_buttons(&[Button::url("Open", url.clone())]).unwrap(),
            Buttons::Url(..)
        ));
        assert!(
            classify_buttons(&[Button::url("Open", url.clone()), Button::reply("Да", "y")])
                .is_err()
        );
        assert!(matches!(
            classify_buttons(&[Button::request_contact("Share")]).unwrap(),
            Buttons::None
        ));
    }
}
