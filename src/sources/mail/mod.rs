//! Mail: understanding one buyer e-mail. Amazon (and Walmart, most Shopify stores, eBay)
//! deliver buyer messages by e-mail, relayed from an anonymised address
//! (`…@marketplace.amazon.com`) to the seller's mailbox, and the reply is an e-mail back
//! to that relay address. [`parse`] turns the raw MIME bytes of one mail into a plain
//! [`ParsedMail`] (charsets, quoted-printable, base64 and HTML handled by `mail-parser`);
//! [`understand`] turns that into an [`Understanding`]: which marketplace relayed it, the
//! address to answer, the order id and tracking number the buyer gave, the language, the
//! intent, the buyer's own words without quoted history, and whether the mail must not be
//! answered at all (an auto-reply, a marketplace notification, bulk mail, our own reply).
//!
//! [`mailbox`] is where mail is read from ([`Mailbox`]: IMAP, a Maildir folder). Parsing
//! and understanding are pure: they never touch the network, the store or the clock.
//!
//! What it must never do:
//! - answer a mail itself, or decide that a mail is answered: it only says what it
//!   understood and, with `do_not_answer`, when an answer would be wrong (answering an
//!   auto-reply or a notification makes mail loops and breaks the marketplace's rules);
//! - load an attachment's content into anything: attachments are recorded by name, type
//!   and size only, and their bytes are dropped while parsing, so no rule, template or log
//!   can ever see them;
//! - log anything of a mail: bodies, addresses and names are buyers' personal data.

pub mod imap;
pub mod mailbox;
pub mod maildir;
mod message;
mod parse;
mod understand;

pub use imap::{ImapMailbox, ImapSecurity, ImapSettings};
pub use mailbox::{Batch, FetchedMail, MailCheckpoint, Mailbox, MailboxError};
pub use maildir::MaildirMailbox;
pub use message::{MailboxContext, buyer_message, message_key};
pub use parse::{Attachment, MAX_MAIL_BYTES, MailError, ParsedMail, parse};
pub use understand::{Intent, Understanding, understand};
