//! radassist: a chest X-ray assistant that sits beside a PACS.
//!
//! The modules, from the ways in down to the domain (each depends only on those below it;
//! `scripts/module-deps --check` keeps it so):
//!
//! - [`server`]: `radassist serve`: start-up, the process's role, health, shutdown;
//! - the ways in: [`grpc`] (the gRPC API), [`dimse`] (the DICOM node: listener, sender,
//!   queries, priors, TLS), [`web`] (the reading room);
//! - [`app`]: the application core every way in calls (ingest, analysis jobs, reading,
//!   results, events), with its typed [`app::Error`];
//! - [`store`]: the catalogue (SQLite or PostgreSQL) and the blobs (a folder or S3);
//! - the domain: [`dicom`] (decoding into the canonical [`imaging::Radiograph`]), [`imaging`],
//!   [`runtime`] and [`inference`] (ONNX models), [`analysis`], [`placement`], [`priors`],
//!   [`draft`] (reports, SR, FHIR), [`labeler`], [`qa`], [`sentences`], [`validation`] (a
//!   pack's acceptance test on a site's studies);
//! - beside them: [`config`], [`roles`], [`pem`], [`excerpt`], [`causes`], [`markup`].
//!
//! Everything after decoding sees only [`imaging::Radiograph`], so no analysis needs to know DICOM.

#![allow(rustdoc::private_intra_doc_links)]

pub mod analysis;
pub mod app;
pub mod causes;
pub mod config;
pub mod dicom;
pub mod dicomweb_client;
pub mod dimse;
pub mod draft;
pub mod excerpt;
pub mod grpc;
pub mod imaging;
pub mod inference;
pub mod labeler;
pub mod markup;
pub mod pem;
pub mod placement;
pub mod priors;
pub mod qa;
pub mod roles;
pub mod runtime;
pub mod segmentation;
pub mod sentences;
pub mod server;
pub mod store;
pub mod validation;
pub mod web;
