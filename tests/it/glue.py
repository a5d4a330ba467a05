# Reads back, with boto3, the Glue database `lakepipe catalog refresh --glue` wrote, and compares
# every table with its Athena DDL file in the lake, parsed by sqlglot (an independent parser):
# columns and types, partition columns, location, row format (SerDe and its properties, or the
# field delimiter) and TBLPROPERTIES. Prints {"tables": {...}, "mismatches": [...]}.
#
# usage: glue.py ENDPOINT BUCKET LAKE_PREFIX DATABASE
import json
import sys

import boto3
import sqlglot
from sqlglot import exp

endpoint, bucket, prefix, database = sys.argv[1:5]
kw = dict(
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="testing",
    aws_secret_access_key="testing",
)
s3 = boto3.client("s3", **kw)
glue = boto3.client("glue", **kw)


def hive(kind):
    return kind.sql(dialect="hive").lower()


def ddl_tables():
    """name -> what the DDL file says."""
    out = {}
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{prefix}/metadata/athena/"
    )
    for page in pages:
        for o in page.get("Contents", []):
            sql = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().decode()
            e = sqlglot.parse_one(sql, read="athena")
            if e.args["kind"] != "TABLE":
                continue
            tbl = e.this
            schema = tbl if isinstance(tbl, exp.Schema) else None
            name = (tbl.this if schema else tbl).name
            props = e.args["properties"].expressions
            d = {
                "columns": [[c.name, hive(c.args["kind"])] for c in schema.expressions]
                if schema
                else [],
                "partition_keys": [],
                "location": None,
                "serde": None,
                "serde_parameters": {},
                "parameters": {},
            }
            for p in props:
                if isinstance(p, exp.PartitionedByProperty):
                    d["partition_keys"] = [
                        [c.name, hive(c.args["kind"])] for c in p.this.expressions
                    ]
                elif isinstance(p, exp.LocationProperty):
                    d["location"] = p.this.name
                elif isinstance(p, exp.RowFormatSerdeProperty):
                    d["serde"] = p.this.name
                    sp = p.args.get("serde_properties")
                    for q in sp.expressions if sp else []:
                        d["serde_parameters"][q.this.name] = q.args["value"].name
                elif isinstance(p, exp.RowFormatDelimitedProperty):
                    d["serde"] = "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe"
                    delim = p.args["fields"].name
                    d["serde_parameters"] = {
                        "field.delim": delim,
                        "serialization.format": delim,
                    }
                elif type(p) is exp.Property:
                    d["parameters"][p.this.name] = p.args["value"].name
            out[name] = d
    return out


def glue_tables():
    out = {}
    for page in glue.get_paginator("get_tables").paginate(DatabaseName=database):
        for t in page["TableList"]:
            sd = t.get("StorageDescriptor", {})
            serde = sd.get("SerdeInfo", {})
            params = dict(t.get("Parameters", {}))
            out[t["Name"]] = {
                "table_type": t.get("TableType"),
                "external": params.pop("EXTERNAL", None),
                "columns": [[c["Name"], c["Type"]] for c in sd.get("Columns", [])],
                "partition_keys": [[c["Name"], c["Type"]] for c in t.get("PartitionKeys", [])],
                "location": sd.get("Location"),
                "serde": serde.get("SerializationLibrary"),
                "serde_parameters": serde.get("Parameters", {}),
                "input_format": sd.get("InputFormat"),
                "parameters": params,
            }
    return out


ddl = ddl_tables()
got = glue_tables()
db = glue.get_database(Name=database)["Database"]
mismatches = []
if sorted(ddl) != sorted(got):
    mismatches.append({"tables": {"ddl": sorted(ddl), "glue": sorted(got)}})
for name, d in ddl.items():
    g = got.get(name)
    if g is None:
        continue
    for field in ["columns", "partition_keys", "location", "serde", "serde_parameters", "parameters"]:
        if d[field] != g[field]:
            mismatches.append({"table": name, "field": field, "ddl": d[field], "glue": g[field]})
    if g["table_type"] != "EXTERNAL_TABLE" or g["external"] != "TRUE":
        mismatches.append({"table": name, "field": "external", "glue": [g["table_type"], g["external"]]})
    text = d["serde"] is not None
    want_input = "org.apache.hadoop.mapred.TextInputFormat" if text else None
    if g["input_format"] != want_input:
        mismatches.append({"table": name, "field": "input_format", "glue": g["input_format"]})
print(json.dumps({"database": db["Name"], "tables": got, "mismatches": mismatches}))
