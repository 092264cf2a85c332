//! `OciRegistry` against scripted HTTP answers (wiremock), for what the real registry in the
//! integration tests cannot show: the Bearer token flow, a missing `Docker-Content-Digest`, and
//! error bodies. Each test scripts exactly the requests the flow must make (`expect(1)`), so an
//! extra or missing request fails the test when the mock server is dropped.

use std::time::Duration;

use jobforge_core::image::ImageRef;
use jobforge_core::ports::{Registry, RegistryError};
use jobforge_core::secret::{Credentials, SecretValue};
use wiremock::matchers::{basic_auth, bearer_token, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{OciRegistry, RegistryConfig};

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// A client that speaks plain http to `server`.
fn client(server: &MockServer) -> OciRegistry {
    let host = server.address().to_string().parse().expect("a loopback host");
    let config = RegistryConfig { insecure: vec![host], timeout: Duration::from_secs(10), ..RegistryConfig::default() };
    OciRegistry::new(config).expect("a client")
}

fn image(server: &MockServer, reference: &str) -> ImageRef {
    format!("{}/{reference}", server.address()).parse().expect("an image reference")
}

fn creds() -> Credentials {
    Credentials { username: SecretValue::new("robot"), password: SecretValue::new("pa55-word") }
}

fn no_authorization(request: &wiremock::Request) -> bool {
    !request.headers.contains_key("authorization")
}

/// `401` with a Bearer challenge whose realm is `/token` on `server`.
fn bearer_challenge(server: &MockServer, params: &str) -> ResponseTemplate {
    ResponseTemplate::new(401)
        .insert_header("WWW-Authenticate", format!(r#"Bearer realm="{}/token",{params}"#, server.uri()).as_str())
}

#[tokio::test]
async fn a_bearer_challenge_is_answered_with_a_token_fetched_with_the_credentials() {
    let server = MockServer::start().await;
    Mock::given(method("HEAD"))
        .and(path("/v2/a/b/manifests/latest"))
        .and(no_authorization)
        .respond_with(bearer_challenge(&server, r#"service="reg",scope="repository:a/b:pull""#))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/token"))
        .and(query_param("service", "reg"))
        .and(query_param("scope", "repository:a/b:pull"))
        .and(basic_auth("robot", "pa55-word"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({ "token": "tok-123" })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("HEAD"))
        .and(path("/v2/a/b/manifests/latest"))
        .and(bearer_token("tok-123"))
        .respond_with(ResponseTemplate::new(200).insert_header("Docker-Content-Digest", DIGEST))
        .expect(1)
        .mount(&server)
        .await;

    let digest = client(&server).digest(&image(&server, "a/b:latest"), Some(&creds())).await.expect("digest");
    assert_eq!(digest.map(String::from).as_deref(), Some(DIGEST));
}

#[tokio::test]
async fn without_credentials_an_anonymous_token_is_fetched_and_access_token_is_accepted() {
    let server = MockServer::start().await;
    Mock::given(method("HEAD"))
        .and(path("/v2/a/b/manifests/latest"))
        .and(no_authorization)
        .respond_with(bearer_challenge(&server, r#"service="reg",scope="repository:a/b:pull""#))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/token"))
        .and(query_param("service", "reg"))
        .and(query_param("scope", "repository:a/b:pull"))
        .and(no_authorization)
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({ "access_token": "anon-7" })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("HEAD"))
        .and(path("/v2/a/b/manifests/latest"))
        .and(bearer_token("anon-7"))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;

    let digest = client(&server).digest(&image(&server, "a/b:latest"), None).await.expect("a 404 is None");
    assert_eq!(digest, None);
}

#[tokio::test]
async fn a_delete_asks_for_the_delete_scope_when_the_challenge_names_none() {
    let server = MockServer::start().await;
    let manifest = format!("/v2/a/b/manifests/{DIGEST}");
    Mock::given(method("DELETE"))
        .and(path(manifest.as_str()))
        .and(no_authorization)
        .respond_with(bearer_challenge(&server, r#"service="reg""#))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/token"))
        .and(query_param("service", "reg"))
        .and(query_param("scope", "repository:a/b:delete"))
        .and(basic_auth("robot", "pa55-word"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({ "token": "del-1" })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path(manifest.as_str()))
        .and(bearer_token("del-1"))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&server)
        .await;

    let deleted =
        client(&server).delete(&image(&server, &format!("a/b@{DIGEST}")), Some(&creds())).await.expect("delete");
    assert!(deleted);
}

#[tokio::test]
async fn a_token_service_refusing_the_credentials_is_unauthorized_and_names_no_secret() {
    let server = MockServer::start().await;
    Mock::given(method("HEAD"))
        .and(path("/v2/a/b/manifests/latest"))
        .respond_with(bearer_challenge(&server, r#"service="reg",scope="repository:a/b:pull""#))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(401).set_body_string("bad credentials for robot"))
        .expect(1)
        .mount(&server)
        .await;

    let err = client(&server).digest(&image(&server, "a/b:latest"), Some(&creds())).await.expect_err("refused");
    assert!(matches!(err, RegistryError::Unauthorized { status: 401, .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("pa55-word"), "{text}");
}

#[tokio::test]
async fn without_docker_content_digest_the_digest_is_the_sha256_of_the_manifest_bytes() {
    let server = MockServer::start().await;
    let body = r#"{"schemaVersion":2}"#;
    Mock::given(method("HEAD"))
        .and(path("/v2/a/b/manifests/v1"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/a/b/manifests/v1"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "application/vnd.oci.image.manifest.v1+json"))
        .expect(1)
        .mount(&server)
        .await;

    let digest = client(&server).digest(&image(&server, "a/b:v1"), None).await.expect("digest");
    // `printf '{"schemaVersion":2}' | sha256sum`
    let expected = "sha256:bafebd36189ad3688b7b3915ea55d461e0bfcfbdde11e54b0a123999fb6be50f";
    assert_eq!(digest.map(String::from).as_deref(), Some(expected));
}

#[tokio::test]
async fn other_answers_carry_the_registry_message() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path(format!("/v2/a/b/manifests/{DIGEST}").as_str()))
        .respond_with(ResponseTemplate::new(500).set_body_json(serde_json::json!({
            "errors": [{ "code": "UNKNOWN", "message": "storage exploded", "detail": null }]
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path(format!("/v2/c/d/manifests/{DIGEST}").as_str()))
        .respond_with(ResponseTemplate::new(502).set_body_string("<html>bad gateway from the proxy</html>"))
        .expect(1)
        .mount(&server)
        .await;
    let oci = client(&server);

    let err = oci.delete(&image(&server, &format!("a/b@{DIGEST}")), None).await.expect_err("500");
    match err {
        RegistryError::Status { status: 500, message, .. } => assert_eq!(message, "storage exploded (UNKNOWN)"),
        other => panic!("expected Status 500, got {other:?}"),
    }
    let err = oci.delete(&image(&server, &format!("c/d@{DIGEST}")), None).await.expect_err("502");
    match err {
        RegistryError::Status { status: 502, message, .. } => {
            assert_eq!(message, "<html>bad gateway from the proxy</html>")
        }
        other => panic!("expected Status 502, got {other:?}"),
    }
}

/// `401` with a Bearer challenge whose realm is `/token` on `localhost` at `other`'s port: the
/// same machine, another host name, so another host to this client.
fn foreign_challenge(other: &MockServer) -> ResponseTemplate {
    let realm = format!("http://localhost:{}/token", other.address().port());
    ResponseTemplate::new(401)
        .insert_header("WWW-Authenticate", format!(r#"Bearer realm="{realm}",service="reg""#).as_str())
}

#[tokio::test]
async fn credentials_go_to_no_token_realm_on_another_host() {
    let (server, other) = (MockServer::start().await, MockServer::start().await);
    Mock::given(method("HEAD")).respond_with(foreign_challenge(&other)).expect(1).mount(&server).await;
    Mock::given(method("GET"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&other)
        .await;
    let result = client(&server).digest(&image(&server, "a/b:latest"), Some(&creds())).await;
    match result {
        Err(RegistryError::Status { message, .. }) => {
            assert!(
                message.contains("another host") && message.contains("--registry-token-realm localhost"),
                "{message}"
            )
        }
        other => panic!("refused before anything is sent: {other:?}"),
    }
}

#[tokio::test]
async fn a_token_realm_the_operator_allows_gets_the_credentials() {
    let (server, other) = (MockServer::start().await, MockServer::start().await);
    Mock::given(method("HEAD"))
        .and(no_authorization)
        .respond_with(foreign_challenge(&other))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/token"))
        .and(basic_auth("robot", "pa55-word"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({ "token": "tok-9" })))
        .expect(1)
        .mount(&other)
        .await;
    Mock::given(method("HEAD"))
        .and(bearer_token("tok-9"))
        .respond_with(ResponseTemplate::new(200).insert_header("Docker-Content-Digest", DIGEST))
        .expect(1)
        .mount(&server)
        .await;
    let host = server.address().to_string().parse().expect("a loopback host");
    let config = RegistryConfig {
        insecure: vec![host],
        timeout: Duration::from_secs(10),
        token_realms: vec!["localhost".into()],
    };
    let registry = OciRegistry::new(config).expect("a client");
    let digest = registry.digest(&image(&server, "a/b:latest"), Some(&creds())).await.expect("digest");
    assert_eq!(digest.map(String::from).as_deref(), Some(DIGEST));
}

#[tokio::test]
async fn a_redirect_to_another_host_is_not_followed() {
    let (server, other) = (MockServer::start().await, MockServer::start().await);
    let elsewhere = format!("http://localhost:{}/v2/a/b/manifests/latest", other.address().port());
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(307).insert_header("Location", elsewhere.as_str()))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE")).respond_with(ResponseTemplate::new(202)).expect(0).mount(&other).await;
    let digest: jobforge_core::image::Digest = DIGEST.parse().expect("a digest");
    let target = format!("{}/a/b@{digest}", server.address()).parse().expect("an image reference");
    let result = client(&server).delete(&target, Some(&creds())).await;
    assert!(!matches!(result, Ok(true)), "not deleted elsewhere: {result:?}");
}
