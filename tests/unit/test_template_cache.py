"""The local runner's translated template is cached on the hashes of what the translation reads:
unchanged files are read back, a changed template is a cache miss and is translated (and so
deployed) anew."""

from __future__ import annotations

import shutil

from local.template_deploy import ROOT, translated_template


def test_a_changed_template_is_translated_again(tmp_path, monkeypatch):
    monkeypatch.setenv("S3_VENDOR_IMPORT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # the SAM translator builds ARNs
    template = tmp_path / "template.yaml"
    shutil.copy(ROOT / "template.yaml", template)

    sam, cfn, hit = translated_template(template)
    assert not hit
    assert "ImportBucket" in cfn["Resources"] and "Transform" not in cfn  # translated: plain CloudFormation
    again_sam, again_cfn, hit = translated_template(template)
    assert hit and again_cfn == cfn and again_sam == sam

    text = template.read_text()
    assert "\nDescription: >-\n  s3-vendor-import: " in text
    template.write_text(text.replace("\nDescription: >-\n  s3-vendor-import: ",
                                     "\nDescription: >-\n  changed for the cache test. s3-vendor-import: ", 1))
    _sam, changed_cfn, hit = translated_template(template)
    assert not hit
    assert changed_cfn["Description"].startswith("changed for the cache test. ")
    assert changed_cfn["Resources"] == cfn["Resources"]


def test_other_parameters_are_another_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("S3_VENDOR_IMPORT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # the SAM translator builds ARNs
    translated_template()
    _sam, _cfn, hit = translated_template(parameters={"NotificationEmail": "ops@example.com"})
    assert not hit
    assert len(list((tmp_path / "cache").glob("template-*.json"))) == 2
