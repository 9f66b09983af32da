"""Pieces of the simplement-e simulator: the message plan decided by the file, and the in-process
S3 fetcher the local runner can plug in."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from local.simulators.simplemente import plan_messages, s3_client_fetch


def texts(groups):
    return [[(m["Message"], m["Kind"]) for m in group] for group in groups]


def test_plan_clean():
    groups, etat = plan_messages("articles", b'"h";"i"\r\n"a";1\r\n"b";2\r\n')
    assert etat == "Termine"
    assert texts(groups)[-1] == [("Import terminé : 2 lignes importées", 0)]


def test_plan_errors_one_message_per_line():
    groups, etat = plan_messages("articles", b'"h";"i"\r\n"a";1\r\n"INVALID";2\r\n"ERREUR";3\r\n')
    assert etat == "TermineAvecErreurs"
    assert texts(groups)[2] == [("Ligne 3 : valeur invalide, l'enregistrement est ignoré", 1),
                                ("Ligne 4 : valeur invalide, l'enregistrement est ignoré", 1)]
    assert texts(groups)[3][0][0].startswith("Import terminé avec erreurs : 1 lignes importées, 2")


def test_plan_fail_flow_and_silent():
    groups, etat = plan_messages("stocks", b'"h";"i"\r\n"FAIL-FLOW";1\r\n')
    assert etat == "Echec" and texts(groups)[-1] == [("Échec de l'import du flux stocks", 1)]
    assert plan_messages("stocks", b'"h";"i"\r\n"SILENT";1\r\n') == ([], "Silence")


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="eu-west-1")
        client.create_bucket(Bucket="imports", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        client.put_object(Bucket="imports", Key="inbox/simplemente/a b.csv", Body=b"data")
        yield client


def test_s3_client_fetch_reads_the_presigned_object(s3):
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "imports",
                                                          "Key": "inbox/simplemente/a b.csv"}, ExpiresIn=60)
    assert s3_client_fetch(s3)(url) == (200, b"data")


def test_s3_client_fetch_expired_url_is_403(s3):
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "imports",
                                                          "Key": "inbox/simplemente/a b.csv"}, ExpiresIn=-10)
    assert s3_client_fetch(s3)(url)[0] == 403


@pytest.mark.parametrize("query, expired", [
    ("X-Amz-Date=20200101T000000Z&X-Amz-Expires=3600", True),
    ("X-Amz-Date=29990101T000000Z&X-Amz-Expires=3600", False),
    ("Expires=1", True),
    ("Expires=32503680000", False),
])
def test_s3_client_fetch_reads_both_signature_versions(s3, query, expired):
    url = f"https://imports.s3.eu-west-1.amazonaws.com/inbox/simplemente/a%20b.csv?{query}"
    assert s3_client_fetch(s3)(url) == ((403, b"") if expired else (200, b"data"))


def test_s3_client_fetch_missing_object(s3):
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "imports", "Key": "nope"}, ExpiresIn=60)
    assert s3_client_fetch(s3)(url)[0] == 404
