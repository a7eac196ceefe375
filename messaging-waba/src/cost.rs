//! Cost estimates from a configurable price table.
//!
//! Since 2025-07-01 Meta charges per delivered **template** message by category (per-message
//! pricing); free-form messages inside the customer service window are free, and so are utility
//! templates sent inside an open window. The table holds your rates (they depend on the
//! recipient's country and your volume tier, which the adapter does not know); the estimate is
//! carried on [`SendReceipt::cost`](messaging_core::SendReceipt) and, from webhooks' `pricing`
//! objects, on [`DeliveryReport::cost`](messaging_core::DeliveryReport).

use std::collections::BTreeMap;

use messaging_core::{Cost, Purpose};

/// A pricing category (template category, or `Service` for free-form messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PricingCategory {
    /// Marketing templates.
    Marketing,
    /// Utility templates (reminders, results ready).
    Utility,
    /// Authentication (one-time code) templates.
    Authentication,
    /// Free-form messages inside the customer service window.
    Service,
}

impl PricingCategory {
    /// Reads Meta's category (`MARKETING`, `utility`, `authentication_international`, `marketing_lite`,
    /// `service`, `referral_conversion`); `None` for others.
    pub fn from_provider(s: &str) -> Option<PricingCategory> {
        let s = s.trim().to_ascii_lowercase().replace('-', "_");
        Some(match s.as_str() {
            "marketing" | "marketing_lite" => PricingCategory::Marketing,
            "utility" => PricingCategory::Utility,
            "authentication" | "authentication_international" => PricingCategory::Authentication,
            "service" | "referral_conversion" => PricingCategory::Service,
            _ => return None,
        })
    }

    /// The template category a purpose is sent under when the template's own is unknown.
    pub fn for_purpose(purpose: Purpose) -> PricingCategory {
        match purpose {
            Purpose::Marketing => PricingCategory::Marketing,
            Purpose::Authentication => PricingCategory::Authentication,
            Purpose::Service | Purpose::Conversation => PricingCategory::Utility,
        }
    }
}

/// Your rates per category, in one currency.
///
/// ```
/// use messaging_waba::{PriceTable, PricingCategory};
/// let prices = PriceTable::new("USD")
///     .price(PricingCategory::Marketing, 0.0625)
///     .price(PricingCategory::Utility, 0.008);
/// // A utility template outside the window is charged; inside it is free.
/// assert_eq!(prices.estimate(PricingCategory::Utility, true, false).amount, 0.008);
/// assert_eq!(prices.estimate(PricingCategory::Utility, true, true).amount, 0.0);
/// // Free-form text (only possible inside the window) is the service rate, 0 unless set.
/// assert_eq!(prices.estimate(PricingCategory::Service, false, true).amount, 0.0);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct PriceTable {
    currency: String,
    prices: BTreeMap<PricingCategory, f64>,
    free_utility_in_window: bool,
}

impl PriceTable {
    /// An empty table (every category 0) in `currency` (ISO 4217).
    pub fn new(currency: impl Into<String>) -> Self {
        PriceTable {
            currency: currency.into(),
            prices: BTreeMap::new(),
            free_utility_in_window: true,
        }
    }

    /// Sets the rate of a category.
    pub fn price(mut self, category: PricingCategory, amount: f64) -> Self {
        self.prices.insert(category, amount);
        self
    }

    /// Whether utility templates inside an open window are free (Meta's rule since July 2025;
    /// default `true`).
    pub fn free_utility_in_window(mut self, yes: bool) -> Self {
        self.free_utility_in_window = yes;
        self
    }

    /// The currency.
    pub fn currency(&self) -> &str {
        &self.currency
    }

    /// The rate of a category (0 when not set).
    pub fn rate(&self, category: PricingCategory) -> f64 {
        self.prices.get(&category).copied().unwrap_or(0.0)
    }

    /// The estimate for one message: a template of `category`, or free-form (`is_template` false,
    /// the service rate), with the window open or closed.
    pub fn estimate(
        &self,
        category: PricingCategory,
        is_template: bool,
        window_open: bool,
    ) -> Cost {
        let amount = if !is_template {
            self.rate(PricingCategory::Service)
        } else if window_open && category == PricingCategory::Utility && self.free_utility_in_window
        {
            0.0
        } else {
            self.rate(category)
        };
        Cost::new(amount, self.currency.clone())
    }

    /// The cost of a delivered message from a webhook's `pricing` object: `billable: false` or a
    /// `free_*` type is free, else the category's rate.
    pub fn from_pricing(
        &self,
        category: Option<&str>,
        pricing_type: Option<&str>,
        billable: Option<bool>,
    ) -> Cost {
        let free = billable == Some(false)
            || pricing_type.is_some_and(|t| t.to_ascii_lowercase().starts_with("free"));
        let amount = if free {
            0.0
        } else {
            category
                .and_then(PricingCategory::from_provider)
                .map(|c| self.rate(c))
                .unwrap_or(0.0)
        };
        Cost::new(amount, self.currency.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_read_leniently() {
        assert_eq!(
            PricingCategory::from_provider("authentication-international"),
            Some(PricingCategory::Authentication)
        );
        assert_eq!(
            PricingCategory::from_provider("MARKETING"),
            Some(PricingCategory::Marketing)
        );
        assert_eq!(PricingCategory::from_provider("group_x"), None);
        assert_eq!(
            PricingCategory::for_purpose(Purpose::Service),
            PricingCategory::Utility
        );
    }

    #[test]
    fn estimates_follow_category_and_window() {
        let p = PriceTable::new("EUR")
            .price(PricingCategory::Marketing, 0.1)
            .price(PricingCategory::Utility, 0.02)
            .price(PricingCategory::Service, 0.001);
        assert_eq!(
            p.estimate(PricingCategory::Marketing, true, true).amount,
            0.1
        );
        assert_eq!(p.estimate(PricingCategory::Utility, true, true).amount, 0.0);
        assert_eq!(
            p.estimate(PricingCategory::Utility, true, false).amount,
            0.02
        );
        assert_eq!(
            p.estimate(PricingCategory::Marketing, false, true).amount,
            0.001
        );
        let strict = p.clone().free_utility_in_window(false);
        assert_eq!(
            strict.estimate(PricingCategory::Utility, true, true).amount,
            0.02
        );
        assert_eq!(
            p.estimate(PricingCategory::Utility, true, false).currency,
            "EUR"
        );
    }

    #[test]
    fn pricing_objects() {
        let p = PriceTable::new("USD").price(PricingCategory::Marketing, 0.05);
        assert_eq!(
            p.from_pricing(Some("marketing"), Some("regular"), Some(true))
                .amount,
            0.05
        );
        assert_eq!(
            p.from_pricing(Some("marketing"), Some("free_entry_point"), None)
                .amount,
            0.0
        );
        assert_eq!(
            p.from_pricing(Some("marketing"), None, Some(false)).amount,
            0.0
        );
        assert_eq!(p.from_pricing(None, None, None).amount, 0.0);
    }
}
