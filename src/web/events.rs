//! Server-sent events for the open worklists: `study` when a study changes (its data: the
//! Study Instance UID), `critical` when a new critical work item appears (its data: JSON with
//! the UID, the patient and the impression, for the page's alert). The stream follows the
//! service's event channel; a browser that falls behind misses events, not memory, and is told
//! to refresh (`lagged`).

use super::page;
use super::session::Viewer;
use super::{App, WebError};
use crate::app::state::Event as ServiceEvent;
use crate::roles::Role;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

pub async fn stream(
    State(app): State<App>,
    viewer: Viewer,
) -> Result<Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>>, WebError> {
    viewer.require(&[Role::Radiologist])?;
    let mut events = app.state.events.subscribe();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(16);
    tokio::spawn(async move {
        loop {
            let event = match events.recv().await {
                Ok(ServiceEvent::Study(uid)) => Event::default().event("study").data(uid),
                Ok(ServiceEvent::CriticalItem(uid)) => {
                    let found = app.state.work_item(&uid).await;
                    let Ok(item) = found else {
                        continue;
                    };
                    let impression = item
                        .content
                        .draft
                        .impression
                        .iter()
                        .map(|s| s.text.clone())
                        .collect::<Vec<_>>()
                        .join(" ");
                    let data = serde_json::json!({
                        "uid": uid,
                        "patient": page::person_name(&item.content.patient_name),
                        "impression": impression,
                    });
                    Event::default().event("critical").data(data.to_string())
                }
                Err(RecvError::Lagged(_)) => Event::default().event("lagged").data(""),
                Err(RecvError::Closed) => return,
            };
            // The browser went away: the task ends.
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    Ok(Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
