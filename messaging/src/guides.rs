//! Guides: the pages in `messaging/guides/` (linked from the repository README), rendered here
//! so they are part of the API documentation. Their code examples are compiled and run as doctests.

#[doc = include_str!("../guides/which-channel.md")]
pub mod which_channel {}

#[doc = include_str!("../guides/migration-campaign.md")]
pub mod migration_campaign {}

#[doc = include_str!("../guides/regulated-senders.md")]
pub mod regulated_senders {}
