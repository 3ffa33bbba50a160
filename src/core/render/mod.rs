//! Human and JSON output of plans, apply reports and status (pure: strings in, strings out).

pub mod env;
pub mod plan_markdown;
pub mod plan_text;
pub mod status;
pub mod timings;

pub use env::{render_env, render_unset, shell_quote};
pub use plan_markdown::{render_plan_markdown, CommentContext};
pub use plan_text::{render_plan, render_report};
pub use status::{render_status, Status};

/// ANSI styling, applied only when writing to a terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    /// Whether to emit colour codes.
    pub color: bool,
}

impl Style {
    /// Plain text.
    pub const PLAIN: Style = Style { color: false };

    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// Green (additions).
    pub fn green(self, text: &str) -> String {
        self.paint("32", text)
    }

    /// Yellow (changes, warnings).
    pub fn yellow(self, text: &str) -> String {
        self.paint("33", text)
    }

    /// Red (removals, errors).
    pub fn red(self, text: &str) -> String {
        self.paint("31", text)
    }

    /// Bold.
    pub fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }
}
