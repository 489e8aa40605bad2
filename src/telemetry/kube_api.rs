//! The operator's own count of Kubernetes API calls, by verb and resource
//! (`kubilitics_kube_api_requests_total`): a tower layer on the kube client.

use http::{Method, Request, Uri};
use kube::client::{Body, ClientBuilder};

use super::metrics;

/// The verb and resource of one API call, as the API server would name them
/// (`get`/`list`/`watch`/`create`/`update`/`patch`/`delete`/`deletecollection`),
/// and whether it is a server-side dry run.
pub fn classify(method: &Method, uri: &Uri) -> (&'static str, String, bool) {
    let segs: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    // /api/v1/... or /apis/<group>/<version>/...
    let rest: &[&str] = match segs.first() {
        Some(&"api") if segs.len() >= 2 => &segs[2..],
        Some(&"apis") if segs.len() >= 3 => &segs[3..],
        _ => &[],
    };
    let rest = match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let resource = match rest {
        [] => "other".to_string(),
        [r] => r.to_string(),
        [r, _name] => r.to_string(),
        [r, _name, sub, ..] => format!("{r}/{sub}"),
    };
    let named = rest.len() >= 2;
    let query = |want: &[&str]| {
        uri.query()
            .is_some_and(|q| q.split('&').any(|kv| want.contains(&kv)))
    };
    let watch = query(&["watch=true", "watch=1"]);
    let dry_run = query(&["dryRun=All"]);
    let verb = match *method {
        Method::GET if watch => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    };
    (verb, resource, dry_run)
}

/// A client like `Client::try_from(config)` whose calls are counted.
pub fn counted_client(config: kube::Config) -> Result<kube::Client, kube::Error> {
    let layer = tower::util::MapRequestLayer::new(|req: Request<Body>| {
        let (verb, resource, dry_run) = classify(req.method(), req.uri());
        metrics()
            .kube_api_requests
            .with_label_values(&[verb, &resource, if dry_run { "true" } else { "false" }])
            .inc();
        req
    });
    Ok(ClientBuilder::try_from(config)?.with_layer(&layer).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(m: Method, u: &str) -> (&'static str, String) {
        let (verb, resource, _) = classify(&m, &u.parse().unwrap());
        (verb, resource)
    }

    #[test]
    fn names_verbs_and_resources_like_the_apiserver() {
        assert_eq!(
            c(
                Method::GET,
                "/apis/ai.kubilitics.io/v1alpha1/namespaces/a/aiplans/p-1"
            ),
            ("get", "aiplans".into())
        );
        assert_eq!(
            c(
                Method::GET,
                "/apis/ai.kubilitics.io/v1alpha1/aiplans?watch=true&resourceVersion=1"
            ),
            ("watch", "aiplans".into())
        );
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/a/pods?labelSelector=x"),
            ("list", "pods".into())
        );
        assert_eq!(
            c(
                Method::PATCH,
                "/apis/ai.kubilitics.io/v1alpha1/namespaces/a/airequests/r/status?fieldManager=x"
            ),
            ("patch", "airequests/status".into())
        );
        assert_eq!(
            c(Method::POST, "/apis/events.k8s.io/v1/namespaces/a/events"),
            ("create", "events".into())
        );
        assert_eq!(
            c(
                Method::POST,
                "/apis/authorization.k8s.io/v1/subjectaccessreviews"
            ),
            ("create", "subjectaccessreviews".into())
        );
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/a"),
            ("get", "namespaces".into())
        );
        assert_eq!(c(Method::GET, "/version"), ("list", "other".into()));
        assert_eq!(
            c(Method::DELETE, "/api/v1/namespaces/a/pods/p"),
            ("delete", "pods".into())
        );
        let dry = "/api/v1/namespaces/a/configmaps?dryRun=All&fieldManager=x";
        assert!(classify(&Method::POST, &dry.parse().unwrap()).2);
        assert!(
            !classify(
                &Method::POST,
                &"/api/v1/namespaces/a/configmaps".parse().unwrap()
            )
            .2
        );
    }
}
