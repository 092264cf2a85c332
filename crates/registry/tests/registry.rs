//! `OciRegistry` against the real distribution registry (`docker-registry` 2.8), started per test
//! by `jobforge_testkit::registry::TestRegistry`: digests, deletes by tag and by digest,
//! idempotent deletes, Basic auth, ping, and a registry with deletes disabled.
//!
//! Registry state is set up and checked through the fixture's own HTTP helpers, never through
//! the code under test. The Bearer token flow is not here (this registry only does Basic): it is
//! covered by the unit tests in `src/oci/tests.rs`.

use std::time::Duration;

use jobforge_core::image::{Digest, ImageRef, RegistryHost};
use jobforge_core::ports::{Registry, RegistryError};
use jobforge_core::secret::{Credentials, SecretValue};
use jobforge_registry::{OciRegistry, RegistryConfig};
use jobforge_testkit::registry::TestRegistry;

/// A client that speaks plain http to `registry`.
fn client(registry: &TestRegistry) -> OciRegistry {
    OciRegistry::new(RegistryConfig {
        insecure: vec![host(registry)],
        timeout: Duration::from_secs(10),
        ..RegistryConfig::default()
    })
    .expect("an HTTP client")
}

fn host(registry: &TestRegistry) -> RegistryHost {
    registry.host().parse().expect("the fixture's host is valid")
}

/// `HOST/repo:tag` or `HOST/repo@digest` on `registry`.
fn image(registry: &TestRegistry, reference: &str) -> ImageRef {
    format!("{}/{reference}", registry.host()).parse().expect("a valid image reference")
}

fn creds(user: &str, password: &str) -> Credentials {
    Credentials { username: SecretValue::new(user), password: SecretValue::new(password) }
}

fn digest(text: &str) -> Digest {
    text.parse().expect("a digest")
}

#[tokio::test]
async fn digest_of_a_pushed_image_is_its_manifest_digest() {
    let registry = TestRegistry::start();
    let pushed = registry.push_synthetic_image("team/app", "v1").await;
    let oci = client(&registry);

    let by_tag = oci.digest(&image(&registry, "team/app:v1"), None).await.expect("digest by tag");
    assert_eq!(by_tag, Some(digest(&pushed)), "registry log:\n{}", registry.log());

    let by_digest = oci.digest(&image(&registry, &format!("team/app@{pushed}")), None).await.expect("digest by digest");
    assert_eq!(by_digest, Some(digest(&pushed)));
}

#[tokio::test]
async fn a_missing_tag_repository_or_digest_has_no_digest() {
    let registry = TestRegistry::start();
    registry.push_synthetic_image("team/app", "v1").await;
    let oci = client(&registry);
    let unknown_digest = format!("sha256:{}", "0".repeat(64));

    for reference in ["team/app:v2".to_owned(), "team/other:v1".to_owned(), format!("team/app@{unknown_digest}")] {
        let found = oci.digest(&image(&registry, &reference), None).await.expect("a 404 is not an error");
        assert_eq!(found, None, "{reference}");
    }
}

#[tokio::test]
async fn delete_by_tag_removes_the_manifest_and_its_tag() {
    let registry = TestRegistry::start();
    registry.push_synthetic_image("temp/job", "build-1").await;
    let kept = registry.push_synthetic_image("temp/job", "build-2").await;
    let oci = client(&registry);

    let deleted = oci.delete(&image(&registry, "temp/job:build-1"), None).await.expect("delete by tag");
    assert!(deleted, "registry log:\n{}", registry.log());
    assert_eq!(registry.digest("temp/job", "build-1").await, None);
    assert_eq!(registry.tags("temp/job").await, vec!["build-2".to_owned()]);
    assert_eq!(registry.digest("temp/job", "build-2").await, Some(kept));
}

#[tokio::test]
async fn delete_by_digest_removes_the_manifest_and_every_tag_on_it() {
    let registry = TestRegistry::start();
    let pushed = registry.push_synthetic_image("temp/job", "build-1").await;
    let oci = client(&registry);

    let deleted = oci.delete(&image(&registry, &format!("temp/job@{pushed}")), None).await.expect("delete by digest");
    assert!(deleted, "registry log:\n{}", registry.log());
    assert_eq!(registry.digest("temp/job", &pushed).await, None);
    assert_eq!(registry.digest("temp/job", "build-1").await, None);
    assert!(registry.tags("temp/job").await.is_empty());
    // The repository itself stays known to the registry, without manifests.
    assert_eq!(registry.catalog().await, vec!["temp/job".to_owned()]);
}

#[tokio::test]
async fn deleting_twice_answers_false_the_second_time() {
    let registry = TestRegistry::start();
    let pushed = registry.push_synthetic_image("temp/job", "build-1").await;
    let oci = client(&registry);
    let by_tag = image(&registry, "temp/job:build-1");
    let by_digest = image(&registry, &format!("temp/job@{pushed}"));

    assert!(oci.delete(&by_tag, None).await.expect("first delete"));
    assert!(!oci.delete(&by_tag, None).await.expect("delete of a gone tag"));
    assert!(!oci.delete(&by_digest, None).await.expect("delete of a gone digest"));
    assert!(!oci.delete(&image(&registry, "never/pushed:x"), None).await.expect("delete in an unknown repository"));
}

#[tokio::test]
async fn with_basic_auth_credentials_are_required_and_used() {
    let registry = TestRegistry::start_with_auth("builder", "s3cret-pw");
    let pushed = registry.push_synthetic_image("private/app", "v1").await;
    let oci = client(&registry);
    let tagged = image(&registry, "private/app:v1");
    let right = creds("builder", "s3cret-pw");
    let wrong = creds("builder", "wrong-pw");

    let err = oci.digest(&tagged, None).await.expect_err("no credentials");
    assert!(matches!(err, RegistryError::Unauthorized { status: 401, .. }), "{err:?}");
    let err = oci.digest(&tagged, Some(&wrong)).await.expect_err("wrong credentials");
    assert!(matches!(err, RegistryError::Unauthorized { status: 401, .. }), "{err:?}");
    assert!(!err.to_string().contains("wrong-pw"), "{err}");
    let err = oci.delete(&tagged, None).await.expect_err("delete without credentials");
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");

    assert_eq!(oci.digest(&tagged, Some(&right)).await.expect("digest with credentials"), Some(digest(&pushed)));
    assert!(oci.delete(&tagged, Some(&right)).await.expect("delete with credentials"));
    assert_eq!(registry.digest("private/app", &pushed).await, None);
    assert!(!oci.delete(&tagged, Some(&right)).await.expect("second delete with credentials"));
}

#[tokio::test]
async fn ping_checks_reachability_and_credentials() {
    let open = TestRegistry::start();
    client(&open).ping(&host(&open), None).await.expect("ping an open registry");

    let guarded = TestRegistry::start_with_auth("builder", "s3cret-pw");
    let oci = client(&guarded);
    let guarded_host = host(&guarded);
    oci.ping(&guarded_host, None).await.expect("without credentials a 401 still means reachable");
    oci.ping(&guarded_host, Some(&creds("builder", "s3cret-pw"))).await.expect("ping with credentials");
    let err = oci.ping(&guarded_host, Some(&creds("builder", "nope"))).await.expect_err("wrong credentials");
    assert!(matches!(err, RegistryError::Unauthorized { status: 401, .. }), "{err:?}");
}

#[tokio::test]
async fn a_registry_that_does_not_listen_is_unreachable() {
    // Nothing listens on the port once the registry is gone.
    let (closed, oci) = {
        let registry = TestRegistry::start();
        (host(&registry), client(&registry))
    };
    let err = oci.ping(&closed, None).await.expect_err("nothing listens");
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err:?}");
    let image: ImageRef = format!("{closed}/a/b:c").parse().expect("an image reference");
    let err = oci.digest(&image, None).await.expect_err("nothing listens");
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err:?}");
}

#[tokio::test]
async fn hosts_not_configured_as_insecure_are_spoken_to_over_https() {
    let registry = TestRegistry::start();
    registry.push_synthetic_image("team/app", "v1").await;
    let oci = OciRegistry::new(RegistryConfig::default()).expect("an HTTP client");

    // The plain-http registry cannot complete a TLS handshake.
    let err = oci.digest(&image(&registry, "team/app:v1"), None).await.expect_err("TLS to a plain-http registry");
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err:?}");
}

#[tokio::test]
async fn a_registry_with_deletes_disabled_says_so() {
    let registry = TestRegistry::start_without_delete();
    let pushed = registry.push_synthetic_image("temp/job", "build-1").await;
    let oci = client(&registry);

    for reference in ["temp/job:build-1".to_owned(), format!("temp/job@{pushed}")] {
        let err = oci.delete(&image(&registry, &reference), None).await.expect_err("deletes are disabled");
        assert!(matches!(err, RegistryError::DeleteDisabled { .. }), "{reference}: {err:?}");
    }
    assert_eq!(registry.digest("temp/job", "build-1").await, Some(pushed));
}
