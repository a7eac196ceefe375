//! SMS encoding: GSM 03.38 detection and segment counting. (Being written; see the hygiene issue.)

/// The encoding an SMS text needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SmsEncoding {
    /// GSM 03.38 7-bit default alphabet (with the extension table).
    #[serde(rename = "GSM-7")]
    Gsm7,
    /// UCS-2 (UTF-16 units).
    #[serde(rename = "UCS-2")]
    Ucs2,
}

/// The result of [`analyze`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmsAnalysis {
    /// The encoding.
    pub encoding: SmsEncoding,
    /// Septets (GSM-7) or UTF-16 units (UCS-2).
    pub units: usize,
    /// Segments.
    pub segments: usize,
}

/// Analyzes a text.
pub fn analyze(text: &str) -> SmsAnalysis {
    let units = text.encode_utf16().count();
    SmsAnalysis {
        encoding: SmsEncoding::Ucs2,
        units,
        segments: if units <= 70 { 1 } else { units.div_ceil(67) },
    }
}
