//! radassist's integration tests, as one test binary (ripgrep's pattern): the shared helpers in
//! `common` compile once and the tests link once. Each module is one area, run alone with
//! `cargo test --test integration -- MODULE::` (e.g. `-- dicom::`).

mod common;

mod analysis;
mod backup;
mod bad_input;
mod cli;
mod crash;
mod decode_reference;
mod dicom;
mod dicom_priors;
mod dicom_results;
mod dicomweb;
mod draft;
mod export_recipes;
mod full_disk;
mod header;
mod image_packs;
mod labeler;
mod layout;
mod models;
mod power_cut;
mod power_loss_fs;
mod qa;
mod report;
mod results_objects;
mod scale_out;
mod security;
mod segmentation;
mod service;
mod service_core;
mod store;
mod validate;
mod validate_landmarks;
mod viewer;
mod web;
