//! [`ApiError`]: every refusal and failure of a request, with its status and JSON body.
//!
//! A caller's mistake is a 4xx naming the field and the rule; a failure of the service is a
//! 500 whose details are logged here, in the request's span, and withheld from the body.

use axum::Json;
use axum::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use jobforge_api::{ErrorBody, ErrorCode};
use jobforge_core::access::Denied;
use jobforge_core::validate::Problem;

#[derive(Debug)]
pub enum ApiError {
    Invalid {
        message: String,
        problems: Vec<Problem>,
    },
    /// No token or an unknown one: answered with `WWW-Authenticate: Bearer`.
    Unauthorized(String),
    Forbidden {
        message: String,
        problems: Vec<Problem>,
    },
    NotFound(String),
    MethodNotAllowed,
    Conflict(String),
    /// Past a limit: answered with `Retry-After: retry_after` (seconds).
    TooMany {
        message: String,
        retry_after: u64,
    },
    Unprocessable {
        message: String,
        problems: Vec<Problem>,
    },
    Unavailable(String),
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::Invalid {
            message: format!("invalid request: {field} {message}"),
            problems: vec![Problem::new(field, message)],
        }
    }

    pub fn problems(problems: Vec<Problem>) -> Self {
        let message = match problems.as_slice() {
            [one] => format!("invalid job config: {} {}", one.field, one.message),
            many => format!("invalid job config: {} problems", many.len()),
        };
        ApiError::Invalid { message, problems }
    }

    /// A failure of the service: logged with its cause, reported without it.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "{context}");
        ApiError::Internal(context.to_owned())
    }
}

impl ApiError {
    /// The status and body this error answers with.
    pub fn parts(self) -> (StatusCode, ErrorBody) {
        let (status, code, error, problems) = match self {
            ApiError::Invalid { message, problems } => {
                (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message, problems)
            }
            ApiError::Unauthorized(message) => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message, Vec::new()),
            ApiError::Forbidden { message, problems } => {
                (StatusCode::FORBIDDEN, ErrorCode::Forbidden, message, problems)
            }
            ApiError::NotFound(message) => (StatusCode::NOT_FOUND, ErrorCode::NotFound, message, Vec::new()),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::MethodNotAllowed,
                "method not allowed on this path".to_owned(),
                Vec::new(),
            ),
            ApiError::Conflict(message) => (StatusCode::CONFLICT, ErrorCode::Conflict, message, Vec::new()),
            ApiError::Unprocessable { message, problems } => {
                (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::Unprocessable, message, problems)
            }
            ApiError::TooMany { message, .. } => {
                (StatusCode::TOO_MANY_REQUESTS, ErrorCode::TooManyRequests, message, Vec::new())
            }
            ApiError::Unavailable(message) => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, message, Vec::new())
            }
            ApiError::Internal(context) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                format!("internal error: {context} (details are in the service log)"),
                Vec::new(),
            ),
        };
        (status, ErrorBody { error, code, problems })
    }

    /// Seconds to wait before trying again, for a refusal past a limit.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::TooMany { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The same refusal, for front ends that are not HTTP (MCP tools).
    pub fn into_refusal(self) -> jobforge_api::Refusal {
        let (status, body) = self.parts();
        jobforge_api::Refusal { status: status.as_u16(), body }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = self.retry_after();
        let (status, body) = self.parts();
        with_headers((status, Json(body)).into_response(), retry_after)
    }
}

/// The headers a refusal carries whatever its body's shape: `Retry-After` past a limit,
/// `WWW-Authenticate` on a 401.
pub(crate) fn with_headers(mut response: Response, retry_after: Option<u64>) -> Response {
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    if response.status() == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"jobforge\""));
    }
    response
}

impl From<Denied> for ApiError {
    /// A job hidden from the caller is answered as one that does not exist.
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::Hidden => ApiError::NotFound("no such job".into()),
            Denied::Forbidden { field, message } => {
                let problems = field.map(|field| vec![Problem::new(field, message.clone())]).unwrap_or_default();
                ApiError::Forbidden { message, problems }
            }
        }
    }
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no such endpoint: {}", uri.path()))
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
