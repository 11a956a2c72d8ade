//! What a state machine tells the user. The decision modules (`broker::scheduler`,
//! `worker::machine`, `runner::machine`) do no I/O, so a warning or a note is one of their
//! effects like a message to send, and their shell logs it ([`Notice::log`]); their tests
//! assert on it where a user relies on the words.

/// How loud a notice is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Normal operation worth a line in the log.
    Info,
    /// Something the user should look at (a clean run prints none).
    Warn,
}

/// A line for the user, at a level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// How loud.
    pub level: Level,
    /// The words.
    pub text: String,
}

impl Notice {
    /// A warning.
    pub fn warn(text: impl Into<String>) -> Self {
        Self {
            level: Level::Warn,
            text: text.into(),
        }
    }

    /// A note at `info`.
    pub fn info(text: impl Into<String>) -> Self {
        Self {
            level: Level::Info,
            text: text.into(),
        }
    }

    /// Logs it at its level.
    pub fn log(&self) {
        match self.level {
            Level::Info => tracing::info!("{}", self.text),
            Level::Warn => tracing::warn!("{}", self.text),
        }
    }
}
