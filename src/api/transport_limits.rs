//! The limits that apply to every gRPC call before any service sees it: a
//! deadline on the whole call (a slow or stalled sender included) and the
//! status of an oversized message.
//!
//! tonic answers a message over `max_decoding_message_size` with
//! `OUT_OF_RANGE`; the gRPC status code guide asks for `RESOURCE_EXHAUSTED`
//! there. A message that does not decode (nested past prost's recursion
//! limit, say) it answers `INTERNAL`, which would tell the caller the fault
//! is ours; it is `INVALID_ARGUMENT`. Only those two tonic messages are
//! rewritten; any other status passes untouched.
//!
//! Matching tonic's message text is the only way in: tonic 0.14 builds
//! these statuses inside its codec (`tonic::codec::Streaming`), after the
//! service is called and with no hook to map them, so a layer reading the
//! response trailers is where they can be told apart. The rewritten
//! statuses carry an `ErrorInfo` like every other refusal.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::{Code, Status};

use super::ApiError;

/// The reason of a refusal over a limit.
const LIMIT_EXCEEDED: &str = crate::decision::Reason::LimitExceeded.as_str();

/// The start of tonic's message for a request over the decoding limit.
const TONIC_TOO_LARGE: &str = "Error, decoded message length too large";
/// The start of tonic's message for a request prost could not decode
/// (nested past prost's recursion limit, say), which it calls `INTERNAL`.
const TONIC_UNDECODABLE: &str = "failed to decode Protobuf message";

/// Applies [`TransportLimits`] to a service.
#[derive(Debug, Clone, Copy)]
pub struct TransportLimitsLayer {
    timeout: Duration,
    max_request_bytes: usize,
}

impl TransportLimitsLayer {
    /// Calls end after `timeout`; messages over `max_request_bytes` are
    /// refused (the services themselves are told the same size).
    pub fn new(timeout: Duration, max_request_bytes: usize) -> Self {
        Self {
            timeout,
            max_request_bytes,
        }
    }
}

impl<S> tower::Layer<S> for TransportLimitsLayer {
    type Service = TransportLimits<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TransportLimits {
            inner,
            limits: *self,
        }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct TransportLimits<S> {
    inner: S,
    limits: TransportLimitsLayer,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for TransportLimits<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let limits = self.limits;
        let call = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout(limits.timeout, call).await {
                Ok(Ok(response)) => Ok(decode_failures_are_the_callers(
                    response,
                    limits.max_request_bytes,
                )),
                Ok(Err(error)) => Err(error),
                Err(_) => Ok(Status::from(ApiError::refused(
                    Code::DeadlineExceeded,
                    LIMIT_EXCEEDED,
                    format!(
                        "the call was not done within {} ms \
                         (`limits.request_timeout_ms` in mandate.toml)",
                        limits.timeout.as_millis()
                    ),
                ))
                .into_http()),
            }
        })
    }
}

/// Rewrites tonic's statuses for requests that fail to decode; see the
/// module documentation.
fn decode_failures_are_the_callers<B>(
    mut response: http::Response<B>,
    limit: usize,
) -> http::Response<B> {
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    let rewritten = match status.code() {
        Code::OutOfRange if status.message().starts_with(TONIC_TOO_LARGE) => {
            let found = status
                .message()
                .split("found ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .unwrap_or("over the limit");
            Status::from(ApiError::refused(
                Code::ResourceExhausted,
                LIMIT_EXCEEDED,
                format!(
                    "the request is {found} bytes; the limit is {limit} \
                     (`limits.max_request_bytes` in mandate.toml)"
                ),
            ))
        }
        Code::Internal if status.message().starts_with(TONIC_UNDECODABLE) => {
            Status::from(ApiError::InvalidArgument(format!(
                "the request is not a valid message: {}",
                status.message()
            )))
        }
        _ => return response,
    };
    if rewritten.add_header(response.headers_mut()).is_err() {
        // Should the message ever not encode, the original status still
        // refuses the call.
        tracing::debug!("could not rewrite the status of an undecodable request");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: Status) -> http::Response<()> {
        status.into_http()
    }

    #[test]
    fn tonic_too_large_becomes_resource_exhausted_with_the_key() {
        let response = decode_failures_are_the_callers(
            answered(Status::out_of_range(format!(
                "{TONIC_TOO_LARGE}: found 2000 bytes, the limit is: 1000 bytes"
            ))),
            1000,
        );
        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("2000 bytes"), "{status:?}");
        assert!(status.message().contains("limits.max_request_bytes"));
    }

    #[test]
    fn an_undecodable_request_is_invalid_argument() {
        let response = decode_failures_are_the_callers(
            answered(Status::internal(format!(
                "{TONIC_UNDECODABLE}: recursion limit reached"
            ))),
            1000,
        );
        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("recursion limit"), "{status:?}");
    }

    #[test]
    fn other_statuses_pass_untouched() {
        for status in [
            Status::out_of_range("page 9 of 3"),
            Status::invalid_argument(TONIC_TOO_LARGE),
            Status::internal("internal error"),
        ] {
            let code = status.code();
            let response = decode_failures_are_the_callers(answered(status), 1000);
            assert_eq!(
                Status::from_header_map(response.headers()).unwrap().code(),
                code
            );
        }
        let ok = decode_failures_are_the_callers(http::Response::new(()), 1000);
        assert!(Status::from_header_map(ok.headers()).is_none());
    }
}
