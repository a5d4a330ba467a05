# Validates OpenLineage events (one JSON document per line of argv[1]) with the models of the
# openlineage-python package: each event is built as the package's RunEvent and facet classes,
# whose validators check run ids, times and URIs; every facet's _schemaURL must be the one its
# model names; and the model serialised back must equal the event (no key unknown to the spec).
import json, sys
from openlineage.client import event_v2 as ev2
from openlineage.client.facet_v2 import (nominal_time_run, parent_run, job_type_job, error_message_run,
    schema_dataset, input_statistics_input_dataset as isd, output_statistics_output_dataset as osd)
from openlineage.client.serde import Serde

def facet(cls, d, **kw):
    assert d["_schemaURL"] == cls._get_schema(), (d["_schemaURL"], cls._get_schema())
    return cls(**kw, producer=d["_producer"])

def dataset_facets(d):
    out = {}
    for k, f in d.get("facets", {}).items():
        assert k == "schema", k
        out[k] = facet(schema_dataset.SchemaDatasetFacet, f,
            fields=[schema_dataset.SchemaDatasetFacetFields(name=x["name"], type=x["type"]) for x in f["fields"]])
    return out

def stats(cls, f):
    return facet(cls, f, rowCount=f.get("rowCount"), size=f.get("size"))

def model(e):
    rf = e["run"]["facets"]
    run_facets = {
        "nominalTime": facet(nominal_time_run.NominalTimeRunFacet, rf["nominalTime"],
            nominalStartTime=rf["nominalTime"]["nominalStartTime"], nominalEndTime=rf["nominalTime"]["nominalEndTime"]),
        "parent": facet(parent_run.ParentRunFacet, rf["parent"],
            run=parent_run.Run(runId=rf["parent"]["run"]["runId"]),
            job=parent_run.Job(namespace=rf["parent"]["job"]["namespace"], name=rf["parent"]["job"]["name"])),
    }
    if "errorMessage" in rf:
        run_facets["errorMessage"] = facet(error_message_run.ErrorMessageRunFacet, rf["errorMessage"],
            message=rf["errorMessage"]["message"], programmingLanguage=rf["errorMessage"]["programmingLanguage"])
    assert set(rf) <= {"nominalTime", "parent", "errorMessage"}, rf.keys()
    jt = e["job"]["facets"]["jobType"]
    job = ev2.Job(namespace=e["job"]["namespace"], name=e["job"]["name"], facets={"jobType": facet(
        job_type_job.JobTypeJobFacet, jt, processingType=jt["processingType"], integration=jt["integration"], jobType=jt["jobType"])})
    inputs = [ev2.InputDataset(namespace=d["namespace"], name=d["name"], facets=dataset_facets(d),
                inputFacets={k: stats(isd.InputStatisticsInputDatasetFacet, f) for k, f in d.get("inputFacets", {}).items()})
              for d in e["inputs"]]
    outputs = [ev2.OutputDataset(namespace=d["namespace"], name=d["name"], facets=dataset_facets(d),
                outputFacets={k: stats(osd.OutputStatisticsOutputDatasetFacet, f) for k, f in d.get("outputFacets", {}).items()})
              for d in e["outputs"]]
    m = ev2.RunEvent(eventType=ev2.RunState[e["eventType"]], eventTime=e["eventTime"],
        run=ev2.Run(runId=e["run"]["runId"], facets=run_facets), job=job, inputs=inputs, outputs=outputs,
        producer=e["producer"])
    assert m.schemaURL == e["schemaURL"], (m.schemaURL, e["schemaURL"])
    return m

def strip_empty(x):
    if isinstance(x, dict):
        return {k: strip_empty(v) for k, v in x.items() if v not in ({}, [], None)}
    if isinstance(x, list):
        return [strip_empty(v) for v in x]
    return x

n = 0
for line in open(sys.argv[1]):
    e = json.loads(line)
    back = json.loads(Serde.to_json(model(e)))
    assert strip_empty(back) == strip_empty(e), json.dumps([back, e], indent=1)
    n += 1
print(json.dumps({"validated": n}))
