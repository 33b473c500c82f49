//! The lifecycle of a study, its analysis job and its work item: every state, and every change
//! the service makes, in one place.
//!
//! ```text
//! study:     RECEIVING --complete (CompleteStudy, or quiet for stable_study_seconds)--> QUEUED
//!            QUEUED --a worker takes the job--> ANALYZING
//!            ANALYZING --draft committed--> DRAFT_READY --signed--> SIGNED
//!            ANALYZING --failed, attempts left--> QUEUED;  --no attempts left--> FAILED
//!            any state --a new instance arrives--> RECEIVING (the study is analysed again)
//!            ANALYZING --draft committed, the read already signed--> SIGNED (the read stands)
//!            ANALYZING --crash--> QUEUED (at the next start)
//!            (retrieved from a PACS as another study's prior) PRIOR; it stays PRIOR as more
//!            retrieved instances arrive, and a pushed instance makes it RECEIVING
//! job:       queued -> running -> done | queued (retry) | failed
//! work item: UNCLAIMED --claim--> CLAIMED(by R) --release by R--> UNCLAIMED
//!            CLAIMED(by R) --sign by R--> SIGNED
//!            UNCLAIMED, CLAIMED --analysed again--> UNCLAIMED with the new draft
//!            SIGNED --analysed again--> SIGNED, marked images_after_signing (read and draft
//!            kept) --amended--> SIGNED, unmarked
//! result:    (draft committed, or signed) pending --peer answered Success--> sent
//!            pending --send failed--> pending (attempts + 1, next attempt later)
//! ```
//!
//! The store makes each change as one conditional update (`UPDATE ... WHERE status = <from>`)
//! and checks its row count, so that of two callers racing for the same change exactly one
//! wins and the other is told why it did not. Each enum is stored and sent through the one
//! mapping here ([`StudyState::as_str`] and `parse`, and the proto conversions in
//! `super::convert`).

use crate::draft::objects::ResultObject;
use std::fmt;

/// The store and PostgreSQL mappings of a type with `as_str` and `parse`: kept as its text.
macro_rules! text_column {
    ($name:ident) => {
        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(
                value: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                let text = value.as_str()?;
                $name::parse(text).ok_or_else(|| {
                    rusqlite::types::FromSqlError::Other(
                        format!("{text:?} is not a {}", stringify!($name)).into(),
                    )
                })
            }
        }

        impl postgres::types::ToSql for $name {
            fn to_sql(
                &self,
                ty: &postgres::types::Type,
                out: &mut bytes::BytesMut,
            ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
                self.as_str().to_sql(ty, out)
            }

            fn accepts(ty: &postgres::types::Type) -> bool {
                <&str as postgres::types::ToSql>::accepts(ty)
            }

            postgres::types::to_sql_checked!();
        }

        impl<'a> postgres::types::FromSql<'a> for $name {
            fn from_sql(
                ty: &postgres::types::Type,
                raw: &'a [u8],
            ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
                let text = <&str as postgres::types::FromSql>::from_sql(ty, raw)?;
                $name::parse(text)
                    .ok_or_else(|| format!("{text:?} is not a {}", stringify!($name)).into())
            }

            fn accepts(ty: &postgres::types::Type) -> bool {
                <&str as postgres::types::FromSql>::accepts(ty)
            }
        }
    };
}

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in lifecycle order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text the store keeps.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// The value of a stored text (None: not one of ours).
            pub fn parse(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        text_column!($name);
    };
}

text_enum!(
    /// Where a study is in its lifecycle.
    StudyState {
        Receiving => "RECEIVING",
        Queued => "QUEUED",
        Analyzing => "ANALYZING",
        DraftReady => "DRAFT_READY",
        Failed => "FAILED",
        Signed => "SIGNED",
        Prior => "PRIOR",
    }
);

text_enum!(
    /// Where a study's analysis job is.
    JobState {
        Queued => "queued",
        Running => "running",
        Done => "done",
        Failed => "failed",
    }
);

text_enum!(
    /// Where a study's work item (its draft, then its signed read) is.
    WorkItemStatus {
        Unclaimed => "UNCLAIMED",
        Claimed => "CLAIMED",
        Signed => "SIGNED",
    }
);

text_enum!(
    /// Which SR a result sent to a PACS is: the draft (preliminary) or the signed read (final).
    ResultKind {
        Draft => "draft",
        Final => "final",
        Amended => "amended",
    }
);

text_enum!(
    /// Where a result waiting for a peer is: pending (until the peer answers Success) or sent.
    OutboxState {
        Pending => "pending",
        Sent => "sent",
    }
);

impl StudyState {
    /// A state a study leaves only when something new arrives (a watch may end here).
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            StudyState::DraftReady | StudyState::Failed | StudyState::Signed
        )
    }
}

impl JobState {
    /// A job in one of these states is not queued again by completing its study.
    pub fn is_pending(self) -> bool {
        matches!(self, JobState::Queued | JobState::Running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_as_itself() {
        for s in StudyState::ALL {
            assert_eq!(StudyState::parse(s.as_str()), Some(*s));
        }
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(*s));
        }
        for s in WorkItemStatus::ALL {
            assert_eq!(WorkItemStatus::parse(s.as_str()), Some(*s));
        }
        assert_eq!(StudyState::parse("analyzing"), None);
    }
}

// Which result object an outbox row or a made result is (`report`, `measurements`, ...).
text_column!(ResultObject);
