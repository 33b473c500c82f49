//! Who may call what: bearer tokens mapped to roles, checked on every RPC by one tower layer.
//!
//! [`AuthLayer`] sits in front of every gRPC service. For each call it finds the method in
//! [`RPC_ROLES`] (the one table of RPC -> roles), reads the `authorization: Bearer <token>`
//! metadata, maps the token to its holder and role, and either refuses the call
//! (UNAUTHENTICATED: no token or an unknown one; PERMISSION_DENIED: a role that may not) or
//! puts the [`Caller`] in the request's extensions, where the handlers take it with
//! [`caller`]. Admin may call everything; health and reflection are open (they carry no
//! patient data). A method missing from the table is refused to everyone but admin, so a new
//! RPC is closed until it is given its roles here.

use crate::app::Caller;
use crate::config::TokenConfig;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::Status;

pub use crate::roles::Role;

use Role::{Pacs, Qa, Radiologist};

/// Every RPC and the roles that may call it (admin may call every one).
pub const RPC_ROLES: &[(&str, &str, &[Role])] = &[
    ("IngestService", "StoreInstances", &[Pacs]),
    ("IngestService", "CompleteStudy", &[Pacs]),
    ("IngestService", "GetStudy", &[Pacs, Radiologist, Qa]),
    ("IngestService", "WatchStudy", &[Pacs, Radiologist, Qa]),
    ("WorklistService", "ListWorkItems", &[Radiologist]),
    ("WorklistService", "GetWorkItem", &[Radiologist]),
    ("WorklistService", "ClaimWorkItem", &[Radiologist]),
    ("WorklistService", "ReleaseWorkItem", &[Radiologist]),
    ("WorklistService", "SubmitFinalRead", &[Radiologist]),
    ("WorklistService", "AmendFinalRead", &[Radiologist]),
    ("WorklistService", "WatchCriticalItems", &[Radiologist]),
    ("WorklistService", "RenderStudyImage", &[Radiologist, Qa]),
    ("WorklistService", "ListStudyResults", &[Radiologist, Qa]),
    ("WorklistService", "GetStudyResult", &[Radiologist, Qa]),
    ("QualityService", "GetStudyComparison", &[Qa]),
    ("QualityService", "GetAgreement", &[Qa]),
    ("ModelService", "ListModels", &[]),
    ("ModelService", "ListJobs", &[]),
    ("ModelService", "ListResults", &[]),
];

/// Services anyone may call.
const OPEN_SERVICES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

const PACKAGE: &str = "radassist.v1";

/// The tokens of the configuration, and the roles table, checked for each call.
#[derive(Clone)]
pub struct AuthLayer {
    tokens: Arc<HashMap<String, (String, Role)>>,
}

impl AuthLayer {
    pub fn new(tokens: &[TokenConfig]) -> AuthLayer {
        AuthLayer {
            tokens: Arc::new(
                tokens
                    .iter()
                    .map(|t| (t.token.clone(), (t.name.clone(), t.role)))
                    .collect(),
            ),
        }
    }

    /// The caller of `path` ("/radassist.v1.WorklistService/ClaimWorkItem"), or why not;
    /// Ok(None) for the open services.
    fn authorize(
        &self,
        path: &str,
        authorization: Option<&http::HeaderValue>,
        peer: String,
    ) -> Result<Option<Caller>, Status> {
        if OPEN_SERVICES.iter().any(|open| path.starts_with(open)) {
            return Ok(None);
        }
        let header = authorization.ok_or_else(|| {
            Status::unauthenticated(
                "no bearer token: send the metadata \"authorization: Bearer <token>\"",
            )
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Status::unauthenticated("the authorization metadata must be \"Bearer <token>\"")
            })?;
        let (name, role) = self
            .tokens
            .get(token.trim())
            .cloned()
            .ok_or_else(|| Status::unauthenticated("unknown token"))?;
        let call = path.rsplit('/').next().unwrap_or(path);
        let allowed = RPC_ROLES
            .iter()
            .find(|(service, method, _)| path == format!("/{PACKAGE}.{service}/{method}"))
            .map_or(&[][..], |(_, _, roles)| *roles);
        if role != Role::Admin && !allowed.contains(&role) {
            tracing::warn!(caller = %name, role = role.as_str(), call, "permission denied");
            return Err(Status::permission_denied(format!(
                "role {} may not call {call} (allowed: {})",
                role.as_str(),
                Role::allowed(allowed)
            )));
        }
        Ok(Some(Caller { name, role, peer }))
    }
}

/// The caller the layer put in the request.
pub fn caller<T>(request: &tonic::Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::internal("the call was not authorised (no AuthLayer)"))
}

fn peer_of<B>(request: &http::Request<B>) -> String {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let e = request.extensions();
    e.get::<TcpConnectInfo>()
        .and_then(|i| i.remote_addr())
        .or_else(|| {
            e.get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|i| i.get_ref().remote_addr())
        })
        .map(|a| a.to_string())
        .unwrap_or_default()
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Authorized<S>;

    fn layer(&self, inner: S) -> Authorized<S> {
        Authorized {
            inner,
            layer: self.clone(),
        }
    }
}

/// A service behind [`AuthLayer`].
#[derive(Clone)]
pub struct Authorized<S> {
    inner: S,
    layer: AuthLayer,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for Authorized<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let decision = self.layer.authorize(
            request.uri().path(),
            request.headers().get("authorization"),
            peer_of(&request),
        );
        match decision {
            Ok(caller) => {
                if let Some(caller) = caller {
                    request.extensions_mut().insert(caller);
                }
                // The clone that was made ready serves this call (tower's readiness contract).
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(inner.call(request))
            }
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer() -> AuthLayer {
        let token = |token: &str, name: &str, role: &str| TokenConfig {
            token: token.into(),
            name: name.into(),
            role: Role::parse(role).unwrap(),
        };
        AuthLayer::new(&[
            token("pacs-token-0123456789", "router", "pacs"),
            token("admin-token-0123456789", "it", "admin"),
        ])
    }

    #[test]
    fn the_table_decides_and_unknown_methods_are_closed() {
        let l = layer();
        let bearer = |t: &str| http::HeaderValue::from_str(&format!("Bearer {t}")).unwrap();
        let pacs = bearer("pacs-token-0123456789");
        let store = "/radassist.v1.IngestService/StoreInstances";
        assert_eq!(
            l.authorize(store, Some(&pacs), String::new())
                .unwrap()
                .unwrap()
                .role,
            Role::Pacs
        );
        let denied = l
            .authorize(
                "/radassist.v1.WorklistService/ClaimWorkItem",
                Some(&pacs),
                String::new(),
            )
            .unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        let unknown = l
            .authorize(
                "/radassist.v1.IngestService/DropEverything",
                Some(&pacs),
                String::new(),
            )
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::PermissionDenied);
        let admin = bearer("admin-token-0123456789");
        assert!(l.authorize(store, Some(&admin), String::new()).is_ok());
        assert_eq!(
            l.authorize(store, None, String::new()).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert!(l
            .authorize("/grpc.health.v1.Health/Check", None, String::new())
            .unwrap()
            .is_none());
        // Every RPC of the proto has its row.
        for service in [
            super::super::proto::ingest_service_server::SERVICE_NAME,
            super::super::proto::worklist_service_server::SERVICE_NAME,
            super::super::proto::quality_service_server::SERVICE_NAME,
            super::super::proto::model_service_server::SERVICE_NAME,
        ] {
            let short = service.trim_start_matches("radassist.v1.");
            assert!(RPC_ROLES.iter().any(|(s, _, _)| *s == short), "{service}");
        }
    }
}
