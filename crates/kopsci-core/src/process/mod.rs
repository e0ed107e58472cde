//! How kopsci runs other programs (kops, git): an [`Invocation`] is plain
//! data, the [`Runner`] runs it one way — output streamed live and
//! captured, exit code passed through, SIGINT/SIGTERM forwarded
//! ([`signals`]).

pub mod invocation;
pub mod runner;
pub mod signals;

pub use invocation::{Invocation, shell_quote};
pub use runner::{Echo, Outcome, Runner};
pub use signals::Interruption;
