//! radassist: a chest X-ray assistant that sits beside a PACS.
//!
//! The crate follows the data flow of the service (see README.md):
//!
//! - [`dicom`] reads a DICOM instance (any transfer syntax a PACS sends for CR/DX) and turns it
//!   into the canonical [`imaging::Radiograph`], or into a clear [`dicom::DecodeError`];
//! - [`imaging`] holds the canonical radiograph and the steps that follow decoding: the Modality
//!   LUT, the display pipeline (VOI, MONOCHROME1 inversion, Presentation LUT Shape), resizing,
//!   and writing PNG and `.npy` files;
//! - [`runtime`] locates and loads the ONNX Runtime library that model inference runs on.
//!
//! Everything after decoding sees only [`imaging::Radiograph`], so no analysis needs to know DICOM.

pub mod analysis;
pub mod config;
pub mod dicom;
pub mod dimse;
pub mod draft;
pub mod excerpt;
pub mod imaging;
pub mod inference;
pub mod labeler;
pub mod pem;
pub mod placement;
pub mod priors;
pub mod qa;
pub mod roles;
pub mod runtime;
pub mod sentences;
pub mod service;
pub mod store;
pub mod web;
