//! The account's message templates: status, quality, category and parameters, kept current
//! from webhooks ([`TemplateRegistry::apply_signal`]) and from the management API's template
//! list ([`TemplateRegistry::load_graph_list`], fetched by
//! [`WabaChannel::sync_templates`](crate::WabaChannel::sync_templates)).
//!
//! Before a template is sent the registry checks, without any HTTP request, that it is known
//! (once the registry holds the account's full list), that its status allows sending (not
//! paused, disabled, rejected, pending or deleted) and that the parameters match the definition:
//! the count of positional `{{n}}` or the names of named `{{name}}` placeholders per header,
//! body and button.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, RwLock};

use messaging_core::{ButtonSubType, ChannelError, Signal, Template, TemplatePart, TemplateValue};
use serde_json::Value;

use crate::cost::PricingCategory;

/// A template's review status.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TemplateStatus {
    /// Approved: may be sent.
    Approved,
    /// Waiting for review.
    Pending,
    /// Rejected at review.
    Rejected,
    /// Paused for low quality (error 132015 if sent).
    Paused,
    /// Disabled after repeated pauses (error 132016 if sent).
    Disabled,
    /// Deleted or pending deletion.
    Deleted,
    /// Archived.
    Archived,
    /// Quality is low; still sendable, a pause may follow.
    Flagged,
    /// Appealing a rejection.
    InAppeal,
    /// Any other status Meta sends (`LOCKED`, `LIMIT_EXCEEDED`, ...), kept as written.
    Other(String),
}

impl TemplateStatus {
    /// Reads Meta's status or status-update event (`APPROVED`, `REINSTATED`, `PAUSED`, ...).
    pub fn from_provider(s: &str) -> TemplateStatus {
        match s.trim().to_ascii_uppercase().as_str() {
            "APPROVED" | "REINSTATED" | "UNARCHIVED" => TemplateStatus::Approved,
            "PENDING" | "IN_REVIEW" => TemplateStatus::Pending,
            "REJECTED" => TemplateStatus::Rejected,
            "PAUSED" => TemplateStatus::Paused,
            "DISABLED" => TemplateStatus::Disabled,
            "DELETED" | "PENDING_DELETION" => TemplateStatus::Deleted,
            "ARCHIVED" => TemplateStatus::Archived,
            "FLAGGED" => TemplateStatus::Flagged,
            "IN_APPEAL" => TemplateStatus::InAppeal,
            other => TemplateStatus::Other(other.to_owned()),
        }
    }

    /// Whether a template in this status may be sent. Unknown statuses are let through (Meta
    /// then decides); the known non-sendable ones are refused before any request.
    pub fn is_sendable(&self) -> bool {
        matches!(
            self,
            TemplateStatus::Approved | TemplateStatus::Flagged | TemplateStatus::Other(_)
        )
    }
}

impl fmt::Display for TemplateStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            TemplateStatus::Approved => "APPROVED",
            TemplateStatus::Pending => "PENDING",
            TemplateStatus::Rejected => "REJECTED",
            TemplateStatus::Paused => "PAUSED",
            TemplateStatus::Disabled => "DISABLED",
            TemplateStatus::Deleted => "DELETED",
            TemplateStatus::Archived => "ARCHIVED",
            TemplateStatus::Flagged => "FLAGGED",
            TemplateStatus::InAppeal => "IN_APPEAL",
            TemplateStatus::Other(s) => s,
        };
        f.write_str(s)
    }
}

/// The placeholders of one component (header or body).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ComponentParams {
    /// How many positional `{{n}}` placeholders (the highest `n`).
    pub positional: usize,
    /// The names of named `{{name}}` placeholders, in order of first appearance.
    pub named: Vec<String>,
    /// The header is media (`IMAGE`, `VIDEO`, `DOCUMENT`, `LOCATION`): it takes one media parameter.
    pub media: Option<String>,
}

impl ComponentParams {
    /// Placeholders found in a component's text.
    pub fn from_text(text: &str) -> ComponentParams {
        let (positional, named) = placeholders(text);
        ComponentParams {
            positional,
            named,
            media: None,
        }
    }

    /// How many parameters a send must carry for this component.
    pub fn expected(&self) -> usize {
        if self.media.is_some() {
            1
        } else {
            self.positional.max(self.named.len())
        }
    }
}

/// One button of a template definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ButtonSpec {
    /// `QUICK_REPLY`, `URL`, `PHONE_NUMBER`, `COPY_CODE`, ...
    pub kind: String,
    /// Whether the URL has a `{{1}}` suffix that a send must fill.
    pub dynamic: bool,
}

/// What the registry knows about one template (name + language).
#[derive(Clone, Debug, PartialEq)]
pub struct TemplateDefinition {
    /// Name as approved.
    pub name: String,
    /// Language code as Meta writes it (`en_US`, `ru`).
    pub language: String,
    /// Review status.
    pub status: TemplateStatus,
    /// Category (`MARKETING`, `UTILITY`, `AUTHENTICATION`), when known.
    pub category: Option<PricingCategory>,
    /// Quality score (`GREEN`, `YELLOW`, `RED`, `UNKNOWN`), when known.
    pub quality: Option<String>,
    /// Meta's template id.
    pub id: Option<String>,
    /// Whether placeholders are named (`parameter_format: NAMED`).
    pub named_parameters: bool,
    /// The header's placeholders; `None` when the shape is not known (status from a webhook only).
    pub header: Option<ComponentParams>,
    /// The body's placeholders; `None` when the shape is not known.
    pub body: Option<ComponentParams>,
    /// Buttons in template order; empty when none or not known.
    pub buttons: Vec<ButtonSpec>,
}

impl TemplateDefinition {
    /// An approved template with a body of `body_text` (placeholders are counted from it).
    ///
    /// ```
    /// use messaging_waba::TemplateDefinition;
    /// let d = TemplateDefinition::approved("appointment_reminder", "ru", "Здравствуйте, {{1}}! Приём {{2}}.");
    /// assert_eq!(d.body.unwrap().positional, 2);
    /// ```
    pub fn approved(name: impl Into<String>, language: impl Into<String>, body_text: &str) -> Self {
        let body = ComponentParams::from_text(body_text);
        TemplateDefinition {
            name: name.into(),
            language: language.into(),
            status: TemplateStatus::Approved,
            category: None,
            quality: None,
            id: None,
            named_parameters: !body.named.is_empty(),
            header: Some(ComponentParams::default()),
            body: Some(body),
            buttons: Vec::new(),
        }
    }

    /// Sets the category.
    pub fn category(mut self, c: PricingCategory) -> Self {
        self.category = Some(c);
        self
    }

    /// Sets the status.
    pub fn status(mut self, s: TemplateStatus) -> Self {
        self.status = s;
        self
    }

    /// Sets the header placeholders.
    pub fn header(mut self, h: ComponentParams) -> Self {
        self.header = Some(h);
        self
    }

    /// Adds a button.
    pub fn button(mut self, kind: impl Into<String>, dynamic: bool) -> Self {
        self.buttons.push(ButtonSpec {
            kind: kind.into(),
            dynamic,
        });
        self
    }

    /// Reads one element of Meta's `GET /{waba_id}/message_templates` `data[]` (360dialog's
    /// `waba_templates[]` has the same shape). `None` without a name.
    pub fn from_graph(v: &Value) -> Option<TemplateDefinition> {
        let name = v.get("name")?.as_str()?.to_owned();
        let language = v
            .get("language")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let status = TemplateStatus::from_provider(
            v.get("status")
                .and_then(Value::as_str)
                .unwrap_or("APPROVED"),
        );
        let category = v
            .get("category")
            .and_then(Value::as_str)
            .and_then(PricingCategory::from_provider);
        let quality = v
            .get("quality_score")
            .and_then(|q| q.get("score"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let id = v.get("id").and_then(|i| match i {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        let mut named = v
            .get("parameter_format")
            .and_then(Value::as_str)
            .is_some_and(|f| f.eq_ignore_ascii_case("NAMED"));
        let mut header = ComponentParams::default();
        let mut body = ComponentParams::default();
        let mut buttons = Vec::new();
        for c in v
            .get("components")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let ty = c.get("type").and_then(Value::as_str).unwrap_or_default();
            let text = c.get("text").and_then(Value::as_str).unwrap_or_default();
            match ty.to_ascii_uppercase().as_str() {
                "HEADER" => {
                    let format = c
                        .get("format")
                        .and_then(Value::as_str)
                        .unwrap_or("TEXT")
                        .to_ascii_uppercase();
                    header = if format == "TEXT" {
                        ComponentParams::from_text(text)
                    } else {
                        ComponentParams {
                            media: Some(format),
                            ..ComponentParams::default()
                        }
                    };
                }
                "BODY" => body = ComponentParams::from_text(text),
                "BUTTONS" => {
                    for b in c
                        .get("buttons")
                        .and_then(Value::as_array)
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                    {
                        let kind = b
                            .get("type")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_ascii_uppercase();
                        let dynamic = b
                            .get("url")
                            .and_then(Value::as_str)
                            .is_some_and(|u| u.contains("{{"));
                        buttons.push(ButtonSpec { kind, dynamic });
                    }
                }
                _ => {}
            }
        }
        if !header.named.is_empty() || !body.named.is_empty() {
            named = true;
        }
        Some(TemplateDefinition {
            name,
            language,
            status,
            category,
            quality,
            id,
            named_parameters: named,
            header: Some(header),
            body: Some(body),
            buttons,
        })
    }

    /// Checks a template about to be sent against this definition.
    pub fn check(&self, t: &Template) -> Result<(), ChannelError> {
        let who = format!("template {:?} ({})", self.name, self.language);
        if !self.status.is_sendable() {
            return Err(ChannelError::invalid_content(format!(
                "{who} is {} and cannot be sent",
                self.status
            )));
        }
        for (part, spec) in [
            (TemplatePart::Header, &self.header),
            (TemplatePart::Body, &self.body),
        ] {
            let Some(spec) = spec else { continue };
            let given: Vec<_> = t
                .components
                .iter()
                .filter(|c| c.part == part)
                .flat_map(|c| c.parameters.iter())
                .collect();
            let label = if part == TemplatePart::Header {
                "header"
            } else {
                "body"
            };
            if given.len() != spec.expected() {
                return Err(ChannelError::invalid_content(format!(
                    "{who}: the {label} takes {} parameter(s), {} given",
                    spec.expected(),
                    given.len()
                )));
            }
            if spec.media.is_some() {
                if !given
                    .iter()
                    .all(|p| matches!(p.value, TemplateValue::Media(_)))
                {
                    return Err(ChannelError::invalid_content(format!(
                        "{who}: the header is {} and takes a media parameter",
                        spec.media.as_deref().unwrap_or("media")
                    )));
                }
                continue;
            }
            if self.named_parameters || !spec.named.is_empty() {
                let want: BTreeSet<&str> = spec.named.iter().map(String::as_str).collect();
                let got: BTreeSet<&str> = given.iter().filter_map(|p| p.name.as_deref()).collect();
                if want != got || given.iter().any(|p| p.name.is_none()) {
                    return Err(ChannelError::invalid_content(format!(
                        "{who}: the {label} takes named parameters {want:?}, got {got:?}"
                    )));
                }
            } else if given.iter().any(|p| p.name.is_some()) {
                return Err(ChannelError::invalid_content(format!(
                    "{who}: the {label} takes positional parameters, named ones given"
                )));
            }
        }
        if self.buttons.is_empty() && self.body.is_none() {
            return Ok(()); // shape unknown
        }
        let mut filled = BTreeSet::new();
        for c in &t.components {
            let TemplatePart::Button { index, sub_type } = &c.part else {
                continue;
            };
            let Some(spec) = self.buttons.get(usize::from(*index)) else {
                return Err(ChannelError::invalid_content(format!(
                    "{who} has no button at index {index}"
                )));
            };
            let want = match sub_type {
                ButtonSubType::QuickReply => "QUICK_REPLY",
                ButtonSubType::Url => "URL",
            };
            if spec.kind != want {
                return Err(ChannelError::invalid_content(format!(
                    "{who}: button {index} is {}, not {want}",
                    spec.kind
                )));
            }
            let max = if *sub_type == ButtonSubType::Url && !spec.dynamic {
                0
            } else {
                1
            };
            if c.parameters.len() > max {
                return Err(ChannelError::invalid_content(format!(
                    "{who}: button {index} takes at most {max} parameter(s), {} given",
                    c.parameters.len()
                )));
            }
            filled.insert(*index);
        }
        for (i, b) in self.buttons.iter().enumerate() {
            if b.dynamic && !filled.iter().any(|f| usize::from(*f) == i) {
                return Err(ChannelError::invalid_content(format!(
                    "{who}: URL button {i} needs its URL suffix parameter"
                )));
            }
        }
        Ok(())
    }
}

/// Positional count (highest `n` of `{{n}}`) and named placeholders (in order) of a text.
fn placeholders(text: &str) -> (usize, Vec<String>) {
    let mut positional = 0usize;
    let mut named: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let inner = after[..end].trim();
        if let Ok(n) = inner.parse::<usize>() {
            positional = positional.max(n);
        } else if !inner.is_empty()
            && inner
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !named.iter().any(|x| x == inner)
        {
            named.push(inner.to_owned());
        }
        rest = &after[end + 2..];
    }
    (positional, named)
}

fn norm_lang(l: &str) -> String {
    l.trim().replace('-', "_").to_ascii_lowercase()
}

#[derive(Debug, Default)]
struct RegistryInner {
    templates: HashMap<(String, String), TemplateDefinition>,
    complete: bool,
}

/// The account's templates, shared (cheap to clone; clones see the same registry).
///
/// While the registry does not hold the account's full list (nothing loaded yet, or only
/// webhook updates seen), an unknown template is let through to Meta; once a full list was
/// loaded ([`TemplateRegistry::replace_all`], [`TemplateRegistry::load_graph_list`]), an unknown
/// template is refused before any request.
///
/// ```
/// use messaging_core::{ErrorKind, Template, TemplateComponent};
/// use messaging_waba::{TemplateDefinition, TemplateRegistry, TemplateStatus};
/// let reg = TemplateRegistry::new();
/// reg.replace_all([TemplateDefinition::approved("reminder", "ru", "Приём {{1}} в {{2}}")]);
/// let ok = Template::new("reminder", "ru").component(TemplateComponent::body_text(["завтра", "10:00"]));
/// assert!(reg.check(&ok).is_ok());
/// let short = Template::new("reminder", "ru").component(TemplateComponent::body_text(["завтра"]));
/// assert_eq!(reg.check(&short).unwrap_err().kind(), ErrorKind::InvalidContent);
/// assert!(reg.check(&Template::new("nope", "ru")).is_err());
/// reg.set_status("reminder", Some("ru"), TemplateStatus::Paused);
/// assert!(reg.check(&ok).unwrap_err().message().contains("PAUSED"));
/// ```
#[derive(Clone, Default)]
pub struct TemplateRegistry {
    inner: Arc<RwLock<RegistryInner>>,
}

impl fmt::Debug for TemplateRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.read();
        f.debug_struct("TemplateRegistry")
            .field("templates", &g.templates.len())
            .field("complete", &g.complete)
            .finish()
    }
}

impl TemplateRegistry {
    /// An empty registry (unknown templates are let through until a full list is loaded).
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, RegistryInner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, RegistryInner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds or replaces one template.
    pub fn insert(&self, def: TemplateDefinition) {
        let key = (def.name.clone(), norm_lang(&def.language));
        self.write().templates.insert(key, def);
    }

    /// Replaces everything with the account's full list; unknown templates are refused from now on.
    pub fn replace_all(&self, defs: impl IntoIterator<Item = TemplateDefinition>) {
        let mut g = self.write();
        g.templates = defs
            .into_iter()
            .map(|d| ((d.name.clone(), norm_lang(&d.language)), d))
            .collect();
        g.complete = true;
    }

    /// Loads a page list (`data[]` of Meta or `waba_templates[]` of 360dialog) as the full list.
    /// Returns how many templates were read.
    pub fn load_graph_list(&self, pages: &[Value]) -> usize {
        let defs: Vec<TemplateDefinition> = pages
            .iter()
            .flat_map(|p| {
                p.get("data")
                    .or_else(|| p.get("waba_templates"))
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|v| TemplateDefinition::from_graph(&v))
            .collect();
        let n = defs.len();
        self.replace_all(defs);
        n
    }

    /// Whether the registry holds the account's full list.
    pub fn is_complete(&self) -> bool {
        self.read().complete
    }

    /// One template.
    pub fn get(&self, name: &str, language: &str) -> Option<TemplateDefinition> {
        self.read()
            .templates
            .get(&(name.to_owned(), norm_lang(language)))
            .cloned()
    }

    /// How many templates are known.
    pub fn len(&self) -> usize {
        self.read().templates.len()
    }

    /// Whether no template is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets the status of a template (every language when `language` is `None`). A template not
    /// yet known is added with an unknown shape.
    pub fn set_status(&self, name: &str, language: Option<&str>, status: TemplateStatus) {
        self.update(name, language, |d| d.status = status.clone());
    }

    /// Sets the quality score of a template.
    pub fn set_quality(&self, name: &str, language: Option<&str>, quality: &str) {
        self.update(name, language, |d| d.quality = Some(quality.to_owned()));
    }

    fn update(&self, name: &str, language: Option<&str>, f: impl Fn(&mut TemplateDefinition)) {
        let mut g = self.write();
        let mut hit = false;
        for ((n, l), d) in g.templates.iter_mut() {
            if n == name && language.is_none_or(|lang| norm_lang(lang) == *l) {
                f(d);
                hit = true;
            }
        }
        if !hit && let Some(lang) = language {
            let mut d = TemplateDefinition {
                name: name.to_owned(),
                language: lang.to_owned(),
                status: TemplateStatus::Approved,
                category: None,
                quality: None,
                id: None,
                named_parameters: false,
                header: None,
                body: None,
                buttons: Vec::new(),
            };
            f(&mut d);
            g.templates.insert((name.to_owned(), norm_lang(lang)), d);
        }
    }

    /// Applies a [`Signal::TemplateStatus`] from a webhook: a quality score (`GREEN`, `YELLOW`,
    /// `RED`, `UNKNOWN`) sets the quality, anything else the status. Returns whether it applied.
    pub fn apply_signal(&self, signal: &Signal) -> bool {
        let Signal::TemplateStatus {
            name,
            language,
            status,
            ..
        } = signal
        else {
            return false;
        };
        match status.to_ascii_uppercase().as_str() {
            "GREEN" | "YELLOW" | "RED" | "UNKNOWN" => {
                self.set_quality(name, language.as_deref(), status)
            }
            _ => self.set_status(
                name,
                language.as_deref(),
                TemplateStatus::from_provider(status),
            ),
        }
        true
    }

    /// Checks a template before it is sent: known (when the list is complete), sendable status,
    /// parameters matching the definition. Fails with [`messaging_core::ErrorKind::InvalidContent`].
    pub fn check(&self, t: &Template) -> Result<(), ChannelError> {
        check_values(t)?;
        let g = self.read();
        match g.templates.get(&(t.name.clone(), norm_lang(&t.language))) {
            Some(def) => def.check(t),
            None if g.complete => Err(ChannelError::invalid_content(format!(
                "template {:?} ({}) is not among the account's templates",
                t.name, t.language
            ))),
            None => Ok(()),
        }
    }
}

/// Checks that need no definition: no empty text, no mix of named and positional parameters.
pub(crate) fn check_values(t: &Template) -> Result<(), ChannelError> {
    if t.name.trim().is_empty() || t.language.trim().is_empty() {
        return Err(ChannelError::invalid_content(
            "a template needs a name and a language",
        ));
    }
    for c in &t.components {
        let named = c.parameters.iter().filter(|p| p.name.is_some()).count();
        if named != 0 && named != c.parameters.len() {
            return Err(ChannelError::invalid_content(format!(
                "template {:?}: named and positional parameters mixed in one component",
                t.name
            )));
        }
        for p in &c.parameters {
            if let TemplateValue::Text(s) | TemplateValue::Payload(s) = &p.value
                && s.trim().is_empty()
            {
                return Err(ChannelError::invalid_content(format!(
                    "template {:?}: empty parameter value",
                    t.name
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_core::{ErrorKind, TemplateComponent, TemplateParameter};

    #[test]
    fn counts_placeholders() {
        assert_eq!(placeholders("Hi {{1}}, at {{2}} on {{1}}"), (2, vec![]));
        assert_eq!(
            placeholders("Hi {{first_name}}, {{ time }} {{first_name}}"),
            (0, vec!["first_name".to_owned(), "time".to_owned()])
        );
        assert_eq!(placeholders("no vars {{"), (0, vec![]));
        assert_eq!(placeholders("{{}} {{A}}"), (0, vec![]));
    }

    fn graph_def() -> Value {
        serde_json::json!({
            "name": "order_update", "language": "en_US", "status": "APPROVED", "category": "UTILITY",
            "id": "123", "quality_score": {"score": "GREEN"},
            "components": [
                {"type": "HEADER", "format": "IMAGE"},
                {"type": "BODY", "text": "Hi {{1}}, your order {{2}} ships."},
                {"type": "FOOTER", "text": "Thanks"},
                {"type": "BUTTONS", "buttons": [
                    {"type": "QUICK_REPLY", "text": "Stop"},
                    {"type": "URL", "text": "Track", "url": "https://x.example/t/{{1}}"}
                ]}
            ]
        })
    }

    fn full_template() -> Template {
        Template::new("order_update", "en_US")
            .component(TemplateComponent {
                part: TemplatePart::Header,
                parameters: vec![TemplateParameter {
                    name: None,
                    value: TemplateValue::Media(messaging_core::MediaSource::Id("9".into())),
                }],
            })
            .component(TemplateComponent::body_text(["Ann", "#12"]))
            .component(TemplateComponent {
                part: TemplatePart::Button {
                    index: 1,
                    sub_type: ButtonSubType::Url,
                },
                parameters: vec![TemplateParameter {
                    name: None,
                    value: TemplateValue::Text("12".into()),
                }],
            })
    }

    #[test]
    fn graph_definition_is_read_and_checked() {
        let d = TemplateDefinition::from_graph(&graph_def()).unwrap();
        assert_eq!(d.category, Some(PricingCategory::Utility));
        assert_eq!(d.quality.as_deref(), Some("GREEN"));
        assert_eq!(d.header.as_ref().unwrap().media.as_deref(), Some("IMAGE"));
        assert_eq!(d.body.as_ref().unwrap().positional, 2);
        assert_eq!(d.buttons.len(), 2);
        assert!(d.buttons[1].dynamic);
        d.check(&full_template()).unwrap();

        // Missing the URL suffix.
        let mut t = full_template();
        t.components.pop();
        let e = d.check(&t).unwrap_err();
        assert!(e.message().contains("URL button 1"), "{e}");

        // Wrong button kind at index 0.
        let mut t = full_template();
        t.components.push(TemplateComponent {
            part: TemplatePart::Button {
                index: 0,
                sub_type: ButtonSubType::Url,
            },
            parameters: vec![],
        });
        assert!(d.check(&t).unwrap_err().message().contains("QUICK_REPLY"));

        // Header given as text.
        let mut t = full_template();
        t.components[0].parameters[0].value = TemplateValue::Text("x".into());
        assert!(d.check(&t).is_err());

        // Button index that does not exist.
        let mut t = full_template();
        t.components.push(TemplateComponent {
            part: TemplatePart::Button {
                index: 5,
                sub_type: ButtonSubType::QuickReply,
            },
            parameters: vec![],
        });
        assert!(d.check(&t).unwrap_err().message().contains("index 5"));
    }

    #[test]
    fn named_parameters_are_checked_by_name() {
        let d = TemplateDefinition::approved("hello", "en", "Hi {{first_name}}, at {{time}}");
        assert!(d.named_parameters);
        let ok = Template::new("hello", "en").component(TemplateComponent::body_named([
            ("time", "10:00"),
            ("first_name", "Ann"),
        ]));
        d.check(&ok).unwrap();
        let wrong = Template::new("hello", "en").component(TemplateComponent::body_named([
            ("name", "Ann"),
            ("time", "10"),
        ]));
        assert_eq!(
            d.check(&wrong).unwrap_err().kind(),
            ErrorKind::InvalidContent
        );
        let positional =
            Template::new("hello", "en").component(TemplateComponent::body_text(["Ann", "10"]));
        assert!(d.check(&positional).is_err());
    }

    #[test]
    fn statuses_block_sending() {
        let reg = TemplateRegistry::new();
        let t = Template::new("r", "ru").component(TemplateComponent::body_text(["a"]));
        // Unknown, registry not complete: let through.
        reg.check(&t).unwrap();
        for (event, ok) in [
            ("PAUSED", false),
            ("REINSTATED", true),
            ("DISABLED", false),
            ("REJECTED", false),
            ("APPROVED", true),
            ("PENDING", false),
            ("FLAGGED", true),
            ("DELETED", false),
        ] {
            reg.apply_signal(&Signal::TemplateStatus {
                name: "r".into(),
                language: Some("ru".into()),
                status: event.into(),
                reason: None,
            });
            assert_eq!(reg.check(&t).is_ok(), ok, "{event}");
        }
        reg.apply_signal(&Signal::TemplateStatus {
            name: "r".into(),
            language: Some("ru".into()),
            status: "RED".into(),
            reason: None,
        });
        assert_eq!(reg.get("r", "ru").unwrap().quality.as_deref(), Some("RED"));
        assert_eq!(reg.get("r", "RU").unwrap().status, TemplateStatus::Deleted);
    }

    #[test]
    fn complete_registry_refuses_unknown_and_languages_normalise() {
        let reg = TemplateRegistry::new();
        let n = reg.load_graph_list(&[serde_json::json!({"data": [graph_def(), {"no": "name"}]})]);
        assert_eq!(n, 1);
        assert!(reg.is_complete());
        let e = reg.check(&Template::new("other", "en_US")).unwrap_err();
        assert!(e.message().contains("not among"));
        let mut t = full_template();
        t.language = "en-US".into();
        reg.check(&t).unwrap();
    }

    #[test]
    fn value_checks() {
        let mixed = Template::new("x", "en").component(TemplateComponent {
            part: TemplatePart::Body,
            parameters: vec![
                TemplateParameter {
                    name: Some("a".into()),
                    value: TemplateValue::Text("1".into()),
                },
                TemplateParameter {
                    name: None,
                    value: TemplateValue::Text("2".into()),
                },
            ],
        });
        assert!(
            check_values(&mixed)
                .unwrap_err()
                .message()
                .contains("mixed")
        );
        let empty = Template::new("x", "en").component(TemplateComponent::body_text([" "]));
        assert!(check_values(&empty).is_err());
        assert!(check_values(&Template::new("", "en")).is_err());
    }
}
