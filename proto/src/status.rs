//! What x0tta6bl4's servers put in a gRPC status: a short message that names the field and
//! shows at most the start of what the caller sent (a client library may refuse a reply
//! whose grpc-message is large: grpcio does at ~8 kB), and the codes the API documents.

use std::{
    fmt,
    task::{Context, Poll},
};

/// Characters of a caller's value shown in an error.
pub const SHOWN_CHARS: usize = 64;
/// Bytes of a status message at most (longer ones are cut, marked with "...").
pub const MESSAGE_BYTES: usize = 512;

/// Shows a caller's text in an error: quoted, cut after [`SHOWN_CHARS`] characters with its
/// full length, so that a 10 kB value yields a short message.
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(SHOWN_CHARS) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => write!(f, "{:?}... ({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

/// `message` cut to [`MESSAGE_BYTES`] at a character boundary.
pub fn short(message: &str) -> String {
    if message.len() <= MESSAGE_BYTES {
        return message.to_string();
    }
    let mut cut = MESSAGE_BYTES - 3;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &message[..cut])
}

/// The status a server answers with: tonic's "decoded message length too large"
/// (OUT_OF_RANGE) becomes RESOURCE_EXHAUSTED, as gRPC's status-code guide says for a
/// message above the server's limit; every message is cut to [`MESSAGE_BYTES`].
pub fn answered(status: tonic::Status) -> tonic::Status {
    const TOO_LARGE: &str = "Error, decoded message length too large: ";
    if status.code() == tonic::Code::OutOfRange
        && let Some(rest) = status.message().strip_prefix(TOO_LARGE)
    {
        return tonic::Status::resource_exhausted(short(&format!(
            "request message too large: {rest}"
        )));
    }
    if status.message().len() > MESSAGE_BYTES {
        return tonic::Status::new(status.code(), short(status.message()));
    }
    status
}

/// Applies [`answered`] to the statuses a server sends in a response's headers (every
/// error of a unary or client-streaming call, and a stream's refusal).
#[derive(Clone, Copy, Default)]
pub struct StatusLayer;

impl<S> tower::Layer<S> for StatusLayer {
    type Service = StatusService<S>;
    fn layer(&self, inner: S) -> StatusService<S> {
        StatusService { inner }
    }
}

#[derive(Clone)]
pub struct StatusService<S> {
    inner: S,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> tower::Service<http::Request<B>> for StatusService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let call = self.inner.call(req);
        Box::pin(async move {
            let mut response = call.await?;
            rewrite_status(response.headers_mut());
            Ok(response)
        })
    }
}

fn rewrite_status(headers: &mut http::HeaderMap) {
    let Some(status) = tonic::Status::from_header_map(headers) else {
        return;
    };
    if status.code() == tonic::Code::Ok {
        return;
    }
    let fixed = answered(status.clone());
    if fixed.code() != status.code() || fixed.message() != status.message() {
        let _ = fixed.add_header(headers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_value_is_shown_by_its_start_and_length() {
        let long = "1".repeat(10_000);
        let shown = Shown(&long).to_string();
        assert!(shown.len() < 100, "{shown}");
        assert!(shown.ends_with("... (10000 bytes)"), "{shown}");
        assert_eq!(Shown("10.0.0.0/8").to_string(), "\"10.0.0.0/8\"");
        // Multi-byte characters are cut at a boundary.
        assert!(Shown(&"é".repeat(100)).to_string().contains("(200 bytes)"));
    }

    #[test]
    fn too_large_becomes_resource_exhausted_and_long_messages_are_cut() {
        let tonic_says = tonic::Status::out_of_range(
            "Error, decoded message length too large: found 5000000 bytes, the limit is: 4194304 bytes",
        );
        let s = answered(tonic_says);
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert!(
            s.message().contains("found 5000000 bytes"),
            "{}",
            s.message()
        );
        let other = answered(tonic::Status::out_of_range("sport: 70000"));
        assert_eq!(other.code(), tonic::Code::OutOfRange);
        let long = answered(tonic::Status::invalid_argument("x".repeat(10_000)));
        assert_eq!(long.message().len(), MESSAGE_BYTES);
    }

    #[test]
    fn the_headers_carry_the_rewritten_status() {
        let mut headers = http::HeaderMap::new();
        tonic::Status::invalid_argument(format!("prefix: {}", "9".repeat(10_000)))
            .add_header(&mut headers)
            .unwrap();
        rewrite_status(&mut headers);
        let s = tonic::Status::from_header_map(&headers).unwrap();
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(s.message().starts_with("prefix: 999"));
        assert!(s.message().len() <= MESSAGE_BYTES);
    }
}
