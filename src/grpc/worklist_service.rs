//! WorklistService: the radiologist's worklist (critical first, then priority, then age),
//! claim and release, sign and amend a final read ([`crate::app::reading`]), watch for new
//! critical items, render a study's image with its tube and line overlay, and list and fetch
//! the DICOM objects radassist made for it ([`crate::app::downloads`]).
//!
//! Claim, release and sign are the core's ([`crate::app::reading`]): of two radiologists
//! claiming the same item at once, one holds it and the other is told who does. Every call
//! that returns patient data is audited.

use super::auth::caller;
use super::convert::{agreements, millis, study_result_message, uid_of, work_item_message};
use super::proto::worklist_service_server::WorklistService;
use super::proto::*;
use super::watch::{async_stream, WatchStream};
use crate::app::downloads;
use crate::app::reading::{self, Read, Signing};
use crate::app::state::{Event, State};
use crate::app::Error;
use crate::store::lifecycle::WorkItemStatus;
use std::sync::Arc;
use tokio::sync::broadcast;
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct WorklistApi(pub Arc<State>);

const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 500;

#[tonic::async_trait]
impl WorklistService for WorklistApi {
    async fn list_work_items(
        &self,
        request: Request<ListWorkItemsRequest>,
    ) -> Result<Response<ListWorkItemsResponse>, Status> {
        let state = &self.0;
        let caller = caller(&request)?;
        let r = request.get_ref();
        let limit = match r.page_size {
            0 => DEFAULT_PAGE,
            n if n < 0 => return Err(Status::invalid_argument("page_size must not be negative")),
            n => i64::from(n).min(MAX_PAGE),
        };
        let offset = if r.page_token.is_empty() {
            0
        } else {
            r.page_token
                .strip_prefix("o")
                .and_then(|o| o.parse::<i64>().ok())
                .filter(|o| *o >= 0)
                .ok_or_else(|| Status::invalid_argument("page_token is not one this server gave"))?
        };
        let statuses: &'static [WorkItemStatus] = match work_item::Status::try_from(r.status)
            .unwrap_or(work_item::Status::Unspecified)
        {
            work_item::Status::Unclaimed => &[WorkItemStatus::Unclaimed],
            work_item::Status::Claimed => &[WorkItemStatus::Claimed],
            work_item::Status::Signed => &[WorkItemStatus::Signed],
            work_item::Status::Unspecified => &[WorkItemStatus::Unclaimed, WorkItemStatus::Claimed],
        };
        let filter = crate::store::WorkItemFilter {
            statuses: statuses.to_vec(),
            critical_only: r.critical_only,
            signed_with_new_images: r.status == work_item::Status::Unspecified as i32,
            ..Default::default()
        };
        let rows = state
            .store_call(move |s| s.work_items(&filter, offset, limit + 1))
            .await?;
        let more = rows.len() as i64 > limit;
        let work_items = rows
            .iter()
            .take(limit as usize)
            .map(work_item_message)
            .collect::<Vec<_>>();
        state
            .audit(
                &caller,
                "ListWorkItems",
                &format!("{} work items", work_items.len()),
            )
            .await?;
        Ok(Response::new(ListWorkItemsResponse {
            work_items,
            next_page_token: if more {
                format!("o{}", offset + limit)
            } else {
                String::new()
            },
        }))
    }

    async fn get_work_item(
        &self,
        request: Request<GetWorkItemRequest>,
    ) -> Result<Response<WorkItem>, Status> {
        let caller = caller(&request)?;
        let uid = uid_of(&request.get_ref().name, "workItems")?;
        let row = reading::work_item(&self.0, &caller, &uid, "GetWorkItem").await?;
        Ok(Response::new(work_item_message(&row)))
    }

    async fn claim_work_item(
        &self,
        request: Request<ClaimWorkItemRequest>,
    ) -> Result<Response<WorkItem>, Status> {
        let caller = caller(&request)?;
        let uid = uid_of(&request.get_ref().name, "workItems")?;
        let row = reading::claim(&self.0, &caller, &uid, "ClaimWorkItem").await?;
        Ok(Response::new(work_item_message(&row)))
    }

    async fn release_work_item(
        &self,
        request: Request<ReleaseWorkItemRequest>,
    ) -> Result<Response<WorkItem>, Status> {
        let caller = caller(&request)?;
        let uid = uid_of(&request.get_ref().name, "workItems")?;
        let row = reading::release(&self.0, &caller, &uid, "ReleaseWorkItem").await?;
        Ok(Response::new(work_item_message(&row)))
    }

    async fn submit_final_read(
        &self,
        request: Request<SubmitFinalReadRequest>,
    ) -> Result<Response<WorkItem>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let uid = uid_of(&r.name, "workItems")?;
        let (findings, devices) = agreements(r.findings, r.devices);
        let read = Read {
            text: r.text,
            findings,
            devices,
        };
        let row = reading::sign(
            self.0.clone(),
            &caller,
            &uid,
            read,
            Signing::First,
            "SubmitFinalRead",
        )
        .await?;
        Ok(Response::new(work_item_message(&row)))
    }

    async fn amend_final_read(
        &self,
        request: Request<AmendFinalReadRequest>,
    ) -> Result<Response<WorkItem>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let uid = uid_of(&r.name, "workItems")?;
        let (findings, devices) = agreements(r.findings, r.devices);
        let read = Read {
            text: r.text,
            findings,
            devices,
        };
        let signing = Signing::Amendment {
            reason: r.reason,
            replaces: r.replaces.as_ref().map(millis),
        };
        let row = reading::sign(
            self.0.clone(),
            &caller,
            &uid,
            read,
            signing,
            "AmendFinalRead",
        )
        .await?;
        Ok(Response::new(work_item_message(&row)))
    }

    type WatchCriticalItemsStream = WatchStream<WorkItem>;

    async fn watch_critical_items(
        &self,
        request: Request<WatchCriticalItemsRequest>,
    ) -> Result<Response<Self::WatchCriticalItemsStream>, Status> {
        let api = self.clone();
        let caller = caller(&request)?;
        let mut events = api.0.events.subscribe();
        let stream = async_stream(move |tx| async move {
            loop {
                let uid = match events.recv().await {
                    Ok(Event::CriticalItem(uid)) => uid,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                };
                let item = api
                    .0
                    .work_item(&uid)
                    .await
                    .map(|row| work_item_message(&row))
                    .map_err(Status::from);
                if let Ok(item) = &item {
                    let _ = api.0.audit(&caller, "WatchCriticalItems", &item.name).await;
                }
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn render_study_image(
        &self,
        request: Request<RenderStudyImageRequest>,
    ) -> Result<Response<RenderedImage>, Status> {
        let state = self.0.clone();
        let caller = caller(&request)?;
        let r = request.into_inner();
        let uid = uid_of(&r.name, "workItems")?;
        let analysis = if r.overlay {
            let row = self.0.work_item(&uid).await?;
            let analysis: crate::analysis::StudyAnalysis = serde_json::from_str(&row.analysis_json)
                .map_err(|e| Error::internal("the stored analysis", e))?;
            Some(analysis)
        } else {
            None
        };
        let size = match r.max_size {
            0 => 1024,
            n if n > 4096 => return Err(Status::invalid_argument("max_size is at most 4096")),
            n => n as usize,
        };
        let instances = {
            let uid = uid.clone();
            state.store_call(move |s| s.study_instances(&uid)).await?
        };
        let (_, sha) = instances
            .first()
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no instance of study {uid}")))?;
        let store = state.store.clone();
        let png = tokio::task::spawn_blocking(move || {
            let radiograph = crate::store::decode(store.blobs(), &sha)?;
            render_png(&radiograph, size, analysis.as_ref())
        })
        .await
        .map_err(|e| Error::internal("rendering", e))?
        .map_err(Status::failed_precondition)?;
        state
            .audit(&caller, "RenderStudyImage", &format!("workItems/{uid}"))
            .await?;
        Ok(Response::new(png))
    }

    async fn list_study_results(
        &self,
        request: Request<ListStudyResultsRequest>,
    ) -> Result<Response<ListStudyResultsResponse>, Status> {
        let uid = uid_of(&request.get_ref().name, "workItems")?;
        let results = downloads::list(&self.0, &uid).await?;
        Ok(Response::new(ListStudyResultsResponse {
            results: results.iter().map(study_result_message).collect(),
        }))
    }

    async fn get_study_result(
        &self,
        request: Request<GetStudyResultRequest>,
    ) -> Result<Response<StudyResultFile>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let uid = uid_of(&r.name, "workItems")?;
        let (made, dicom) = downloads::fetch(
            &self.0,
            &caller,
            &uid,
            &r.sop_instance_uid,
            "GetStudyResult",
        )
        .await?;
        Ok(Response::new(StudyResultFile {
            result: Some(study_result_message(&made)),
            dicom: dicom.into(),
        }))
    }
}

impl WorklistApi {}

/// The stored instance as a display PNG, longer side at most `size`; with `analysis`, the tube
/// and line overlay drawn on it (the overlay is at most 1024 pixels on its longer side).
pub fn render_png(
    radiograph: &crate::imaging::Radiograph,
    size: usize,
    analysis: Option<&crate::analysis::StudyAnalysis>,
) -> Result<RenderedImage, String> {
    let display = crate::analysis::display(radiograph);
    let (rows, cols) = display.dim();
    let image = match analysis {
        Some(analysis) => {
            let drawn = crate::analysis::overlay::draw(display.view(), analysis);
            let (w, h) = drawn.dimensions();
            let (th, tw) = crate::imaging::resize::fit_longest_side(
                h as usize,
                w as usize,
                size.min(h.max(w) as usize),
            );
            image::DynamicImage::ImageRgb8(drawn).resize_exact(
                tw as u32,
                th as u32,
                image::imageops::FilterType::Triangle,
            )
        }
        None => {
            let (h, w) =
                crate::imaging::resize::fit_longest_side(rows, cols, size.min(rows.max(cols)));
            let small = crate::imaging::resize::resize(display.view(), h, w);
            let pixels = crate::imaging::output::quantise(
                small.view(),
                crate::imaging::output::PngDepth::Eight,
            );
            image::DynamicImage::ImageLuma8(
                image::GrayImage::from_raw(w as u32, h as u32, pixels).ok_or("rendering")?,
            )
        }
    };
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    Ok(RenderedImage {
        png: png.into(),
        width: image.width(),
        height: image.height(),
    })
}
