//! `/docs` in the browser: the reference viewer is served by the service itself and
//! shows the operations, with nothing loaded from another origin.

use serde_json::json;

use crate::harness::run;

#[tokio::test]
async fn the_api_reference_renders_its_operations_from_this_origin_only() {
    run(
        "the_api_reference_renders_its_operations_from_this_origin_only",
        |w| async move {
            w.open("/docs").await;
            // An operation of the API, drawn by the viewer from /openapi.json.
            w.wait_for_text("body", "The log's checkpoint (C2SP tlog-checkpoint in a signed note).")
                .await;
            w.wait_for_text("body", "/v1/log/proofs/inclusion").await;
            let origins = w
                .browser
                .execute(
                    "return performance.getEntriesByType('resource').map((e) => new URL(e.name).origin)",
                    vec![],
                )
                .await
                .unwrap();
            let own = url::Url::parse(&w.url).unwrap().origin().ascii_serialization();
            for o in origins.as_array().unwrap() {
                assert_eq!(o, &json!(own), "a resource from another origin");
            }
        },
    )
    .await;
}
