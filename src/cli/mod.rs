//! The command line's commands, one module per group; `src/main.rs` parses the arguments and
//! calls them. Each stage of the flow runs alone, so a problem can be cornered without the
//! server.
//!
//! - [`image`]: `inspect`, `decode`, `render` (DICOM in, header, pixels, display PNG);
//! - [`models`]: `runtime`, `models list|check`, `embed-text`, `predict`, `report`;
//!   [`validate`]: `models validate` (a findings pack's acceptance test);
//! - [`study`]: `analyze`, `draft`, `export sr|fhir` (a study's analysis and its draft);
//! - [`text`]: `label`; [`qa`]: `qa compare`; [`audit`]: `audit`;
//! - [`users`]: `users add|list|disable|enable` (who logs in to the web reading room).

pub mod audit;
pub mod backup;
pub mod image;
pub mod models;
pub mod qa;
pub mod study;
pub mod text;
pub mod users;
pub mod validate;
