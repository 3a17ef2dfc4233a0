"""tools/paper_numbers.py reads the paper's tables from tools/paper_numbers.csv.

Every expected value below is typed in from MMRL's paper (Guo & Gu, CVPR 2025) as transcribed into the
project's shared table of its numbers (Tables 1, 2, 3, 6, 8, 10, 11), not read from the data file under
test: a cell mistyped or shifted in the file fails here.
"""
from __future__ import annotations

import pytest

from tools import paper_numbers as pn


@pytest.mark.parametrize(
    "method, dataset, expected",
    [
        ("CLIP", "Average", (69.34, 74.22, 71.70)),
        ("ZeroshotCLIP", "imagenet", (72.43, 68.14, 70.22)),  # the trainer's name, the config stem
        ("CoOp", "caltech101", (98.00, 89.81, 93.73)),
        ("ProDA", "Caltech101", (98.27, 93.23, 95.68)),
        ("ProDA", "average", (81.56, 72.30, 76.65)),
        ("MMRL", "eurosat", (95.60, 80.17, 87.21)),
        ("MMRL", "imagenet", (77.90, 71.30, 74.45)),
        ("MMRL", "average", (85.68, 77.16, 81.20)),
    ],
)
def test_table_1_base_to_novel(method, dataset, expected):
    assert pn.base_to_novel(method, dataset) == expected
    assert pn.lookup(method, "base2new", dataset, "hm").source == f"{pn.PAPER}, Table 1"


@pytest.mark.parametrize(
    "method, dataset, expected",
    [
        ("CoOp", "imagenet", 71.51), ("CoOp", "dtd", 41.92), ("CoOp", "average", 63.88),
        ("TCP", "eurosat", 51.45), ("MMRL", "imagenet", 72.03), ("MMRL", "DTD", 45.90),
        ("MMRL", "eurosat", 53.10), ("MMRL", "average", 67.25),
    ],
)  # fmt: skip
def test_table_2_cross_dataset(method, dataset, expected):
    assert pn.cross_dataset(method, dataset) == expected
    assert pn.lookup(method, "cross_dataset", dataset, "accuracy").table == "Table 2"


@pytest.mark.parametrize(
    "method, dataset, expected",
    [
        ("CLIP", "imagenetv2", 60.83), ("ZeroshotCLIP", "imagenet_a", 47.77), ("CLIP", "imagenet_r", 73.96),
        ("MultiModalAdapter", "ImageNetV2", 64.33), ("MMA", "imagenet_r", 77.32),
        ("MMRL", "imagenet_sketch", 49.17), ("MMRL", "imagenet_a", 51.20), ("MMRL", "imagenet_r", 77.53),
    ],
)  # fmt: skip
def test_table_3_domain_generalization(method, dataset, expected):
    assert pn.domain_generalization(method, dataset) == expected
    assert pn.domain_generalization(method, "average") is None  # Table 3 has no average column


@pytest.mark.parametrize(
    "method, dataset, shots, expected, table",
    [
        ("LinearProbeCLIP", "average", 1, 45.83, "Table 10"), ("Linear probe CLIP", "average", 16, 78.79, "Table 10"),
        ("CoOp", "imagenet", 1, 66.33, "Table 10"), ("MMRL", "imagenet", 16, 73.40, "Table 10"),
        ("MMRL", "average", 1, 72.67, "Table 10"), ("CoOp", "eurosat", 16, 84.93, "Table 11"),
        ("MMRL", "eurosat", 1, 76.00, "Table 11"), ("MMRL", "ucf101", 16, 87.60, "Table 11"),
        ("Linear probe CLIP", "UCF101", 1, 53.66, "Table 11"),
    ],
)  # fmt: skip
def test_tables_10_and_11_few_shot(method, dataset, shots, expected, table):
    assert pn.few_shot(method, dataset, shots) == expected
    assert pn.lookup(method, "few_shot", dataset, "accuracy", shots).table == table
    assert pn.few_shot(method, dataset, 3) is None  # no such column


def test_table_6_compute():
    mmrl = pn.compute("MMRL")
    assert mmrl["learnable_params"].text == "4.992M" and mmrl["learnable_params"].value == pytest.approx(4.992e6)
    assert (mmrl["train_ms_per_image"].value, mmrl["fps_batch100"].value, mmrl["hm"].value) == (5.3, 762.4, 81.20)
    mma = pn.compute("MultiModalAdapter")
    assert (mma["learnable_params"].text, mma["train_minutes_all"].value, mma["fps_batch100"].value) == (
        "0.675M", 1.5, 688.5,
    )  # fmt: skip
    assert pn.compute("MMRL*")["learnable_params"].text == "0.689M"
    assert pn.compute("ProVP")["modality"].text == "V" and pn.compute("ProVP")["modality"].value is None
    assert pn.compute("CoOp") == {}  # not in Table 6


def test_table_8_lambda_ablation():
    table = pn.ablation("MMRL", "lambda")
    assert sorted(table) == [0.0, 0.01, 0.1, 0.2, 0.5, 3.0, 4.0, 5.0, 6.0, 7.0, 10.0]
    assert all(len(row) == 11 for row in table.values())  # the 11 datasets, no average
    assert (table[0.0]["ImageNet"], table[0.0]["DTD"], table[0.0]["EuroSAT"]) == (74.01, 68.21, 82.65)
    assert (table[0.2]["ImageNet"], table[0.2]["DTD"], table[0.2]["EuroSAT"]) == (74.38, 70.58, 82.68)
    assert (table[10.0]["ImageNet"], table[10.0]["DTD"], table[10.0]["EuroSAT"]) == (73.68, 73.68, 77.61)
    assert pn.lookup("MMRL", "ablation", "dtd", "hm", setting="lambda=0.2").table == "Table 8"
    assert pn.ablation("MMRL", "alpha") == {}


def test_the_tables_hold_every_method_and_dataset():
    """The sizes of the paper's tables: 12 methods x 12 rows x 3 metrics in Table 1, and so on."""
    def count(protocol):
        rows = pn.numbers(protocol=protocol)
        return len({n.method for n in rows}), len(rows)

    assert count("base2new") == (12, 12 * 12 * 3)
    assert count("cross_dataset") == (7, 7 * 12)
    assert count("domain_generalization") == (7, 7 * 5)
    assert count("few_shot") == (7, 7 * 12 * 5)
    assert count("compute") == (8, 8 * 6)
    assert count("ablation") == (1, 11 * 11)


def test_names_and_misses():
    assert pn.paper_method("ZeroshotCLIP") == "CLIP" and pn.paper_method("CoOp") == "CoOp"
    assert pn.paper_dataset("oxford_flowers") == "Flowers102" and pn.paper_dataset("Food101") == "Food101"
    assert pn.base_to_novel("MMRLpp", "dtd") is None  # MMRL++ is not in the paper's tables
    assert pn.base_to_novel("MMRL", "folder") is None
    assert pn.cross_dataset("CLIP", "dtd") is None  # Table 2 has no zero-shot CLIP row
    with pytest.raises(ValueError, match="protocol must be one of"):
        pn.numbers(protocol="b2n")


def test_base_to_novel_hm_is_the_harmonic_mean_except_where_the_paper_is_not():
    """A typing slip shows as an HM that is not the harmonic mean of the row's base and novel (to rounding).
    The exceptions are listed in the data file's header: the paper's rows as transcribed."""
    inconsistent = {("MetaPrompt", "Average"), ("MetaPrompt", "StanfordCars"), ("MMA", "UCF101"), ("MMRL", "DTD")}
    found = set()
    for n in pn.numbers(protocol="base2new", metric="hm"):
        base, novel = pn.base_to_novel(n.method, n.dataset)[:2]
        if abs(2 * base * novel / (base + novel) - n.value) > 0.011:
            found.add((n.method, n.dataset))
    assert found == inconsistent


def test_a_malformed_file_names_its_line(tmp_path):
    path = tmp_path / "numbers.csv"
    header = ",".join(pn.COLUMNS)
    rows = "MMRL,Table 1,base2new,MMRL,DTD,,,hm,73.82\nMMRL,Table 1,b2n,MMRL,DTD,,,hm,1\n"
    path.write_text(f"# a header\n{header}\n{rows}")
    with pytest.raises(ValueError, match=r"numbers.csv:4: protocol 'b2n'"):
        pn.load(str(path))
    path.write_text(f"{header}\nMMRL,Table 10,few_shot,MMRL,DTD,,,accuracy,50.0\n")
    with pytest.raises(ValueError, match=r"numbers.csv:2: shots are given for few_shot rows"):
        pn.load(str(path))
