"""Where every file of the 15 datasets and the 4 DG ones comes from: one table, read by ``datasets.prepare``.

Each file has a published name (also its name on a ``--mirror``), the sources tried in order (the
original host first, then its known current homes), the checksum where one is known, and what to do
with it once fetched (where to extract which part of the archive). Hosts and file ids are CoOp's
DATASETS.md ones, checked against the issue trackers of the CoOp family's repositories.

Checksums: the md5 values are the ones torchvision's dataset code (0.29) pins for the same files, or,
for ``101_ObjectCategories.tar.gz``, the value of torchvision's older Caltech101 code. Files marked
``checksum=UNKNOWN`` have no published checksum that we know of (the Google Drive split files, the
ImageNet variants, UCF101's frames): they are accepted when they download completely and extract.
The DG datasets (group "dg", fetched only when named): PACS, Office-Home and VLCS are the Google Drive
zips of Dassl's DATASETS.md (the ids in Dassl's and MetaPrompt's loaders; no published checksum), each
holding one top folder (``pacs/``, ``office_home_dg/``, ``VLCS/``: Dassl's loaders find the extracted
folder under those names), placed where MetaPrompt's loaders read it (``pacs/``, ``office_home/``,
``vlcs/``). DomainNet is the cleaned release on its official host (ai.bu.edu/M3SDA links to
csr.bu.edu); its md5 values are those pinned identically by awslabs/Renate's and the ddg toolbox's
DomainNet loaders (the authors publish none).
Hosts marked "unverified" in a note were derived by analogy (the thor host of Oxford's VGG pages for
flowers/DTD/FGVC) and are tried after the original; a 404 there only costs one request.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["UNKNOWN", "DatasetSpec", "FileSpec", "Source", "DATASET_SPECS", "DG_SPECS", "GROUPS", "find_spec"]

UNKNOWN = ""  # no known checksum: the file is accepted when complete (and extractable)
VGG = "https://www.robots.ox.ac.uk/~vgg/data"
THOR = "https://thor.robots.ox.ac.uk/~vgg/data"  # the VGG pages' current host (keras-io#1200)
IMAGENET_PAGE = "https://image-net.org/challenges/LSVRC/2012/2012-downloads.php"


@dataclass(frozen=True)
class Source:
    """One place a file can be fetched from: an http(s) URL or a Google Drive id (fetched with gdown).

    ``name``/``md5`` describe the downloaded file when it is not the published file itself (e.g. a
    zip that holds it as ``member``); ``take``/``dest`` override the file's extraction for a source
    whose archive is laid out differently.
    """

    url: str = ""
    gdrive: str = ""
    name: str = ""
    md5: str = UNKNOWN
    member: str = ""
    take: str | None = None
    dest: str | None = None
    note: str = ""


@dataclass(frozen=True)
class FileSpec:
    """A file of a dataset as published, and what becomes of it under ``DATA/<folder>/``.

    ``provides``: paths (relative to the dataset folder) whose presence means the file is already in
    place (extracted), so it is not fetched again. ``extract``: unpack the archive, move its ``take``
    sub-folder's contents into ``dest``. ``manual``: the file needs a login; the exact step to do by
    hand (``{dest}``: the file's path) is printed when no source (or none at all) delivers it.
    ``for_rebuild``: only needed to rebuild a missing split file (fetched only then). ``dest`` of a file
    that is not extracted: its path in the dataset folder (default: its name at the top).
    """

    name: str
    sources: tuple[Source, ...]
    provides: tuple[str, ...]
    md5: str = UNKNOWN
    sha256: str = UNKNOWN
    size: int = 0
    extract: bool = False
    take: str = ""
    dest: str = ""
    manual: str = ""
    for_rebuild: bool = False

    @property
    def checksum_known(self) -> bool:
        return bool(self.md5 or self.sha256)


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its DATASET.NAME, folder under DATA, files, conversions and what a complete tree holds.

    ``split_file`` is the split_zhou json ("" when the dataset has none); ``image_folder`` the folder the
    split paths are relative to; ``convert`` names steps of ``datasets.prepare`` run after the files
    are in place; ``needs`` paths that must exist for the dataset to be usable. ``group``: "coop" (the 15 datasets
    prepared when no name is given) or "dg" (prepared when named, or all four with the name ``dg``).
    """

    name: str
    folder: str
    config: str
    files: tuple[FileSpec, ...]
    needs: tuple[str, ...]
    split_file: str = ""
    image_folder: str = "images"
    convert: tuple[str, ...] = ()
    group: str = "coop"


def _split(name: str, gdrive: str) -> FileSpec:
    return FileSpec(f"split_zhou_{name}.json", (Source(gdrive=gdrive),), (f"split_zhou_{name}.json",))


_CLASSNAMES = FileSpec("classnames.txt", (Source(gdrive="1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"),), ("classnames.txt",))

DATASET_SPECS: tuple[DatasetSpec, ...] = (
    DatasetSpec(
        "ImageNet",
        "imagenet",
        "imagenet",
        (
            _CLASSNAMES,
            FileSpec(
                "ILSVRC2012_img_train.tar",
                (),
                ("images/train",),
                md5="1d675b47d978889d74fa0da5fadfb00e",
                extract=True,
                dest="images/train",
                manual=f'"Training images (Task 1 & 2)" (138 GB) from {IMAGENET_PAGE} (login, accept the terms); '
                "put it at {dest}",
            ),
            FileSpec(
                "ILSVRC2012_img_val.tar",
                (),
                ("images/val",),
                md5="29b22e2961454d5413ddabcf34fc5622",
                extract=True,
                dest="images/val",
                manual=f'"Validation images (all tasks)" (6.3 GB) from {IMAGENET_PAGE} (login); put it at {{dest}}',
            ),
            FileSpec(
                "ILSVRC2012_devkit_t12.tar.gz",
                (),
                ("images/val",),
                md5="fa75699e90414af021442c21a62c3abf",
                manual=f'"Development kit (Task 1 & 2)" from {IMAGENET_PAGE} (login; it sorts val into class folders; '
                "Kaggle's LOC_val_solution.csv in imagenet/ does too); put it at {dest}",
            ),
        ),
        ("classnames.txt", "images/train", "images/val"),
        convert=("imagenet_train_tars", "imagenet_sort_val"),
    ),
    DatasetSpec(
        "Caltech101",
        "caltech-101",
        "caltech101",
        (
            FileSpec(
                "101_ObjectCategories.tar.gz",
                (
                    Source("http://www.vision.caltech.edu/Image_Datasets/Caltech101/101_ObjectCategories.tar.gz"),
                    Source(
                        "https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip",
                        name="caltech-101.zip",
                        md5="3138e1922a9193bfa496528edbbc45d0",
                        member="caltech-101/101_ObjectCategories.tar.gz",
                        note="the record holds a zip with the tarball inside",
                    ),
                ),
                ("101_ObjectCategories",),
                md5="b224c7392d521a49829488ab0f1120d9",
                extract=True,
            ),
            _split("Caltech101", "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"),
        ),
        ("101_ObjectCategories",),
        split_file="split_zhou_Caltech101.json",
        image_folder="101_ObjectCategories",
    ),
    DatasetSpec(
        "OxfordPets",
        "oxford_pets",
        "oxford_pets",
        (
            FileSpec(
                "images.tar.gz",
                (Source(f"{VGG}/pets/data/images.tar.gz"), Source(f"{THOR}/pets/images.tar.gz")),
                ("images",),
                md5="5c4f3ee8e5d25df40f4fd59a7f44e54c",
                extract=True,
            ),
            FileSpec(
                "annotations.tar.gz",
                (Source(f"{VGG}/pets/data/annotations.tar.gz"), Source(f"{THOR}/pets/annotations.tar.gz")),
                ("annotations",),
                md5="95a8c909bbe2e81eed6a22bccdf3f68f",
                extract=True,
                for_rebuild=True,
            ),
            _split("OxfordPets", "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"),
        ),
        ("images",),
        split_file="split_zhou_OxfordPets.json",
    ),
    DatasetSpec(
        "StanfordCars",
        "stanford_cars",
        "stanford_cars",
        (
            FileSpec(
                "cars_train.tgz",
                (Source("http://ai.stanford.edu/~jkrause/car196/cars_train.tgz", note="offline since ~2023"),),
                ("cars_train",),
                extract=True,
                manual="Kaggle dataset jessicali9530/stanford-cars-dataset (login): its cars_train/cars_train "
                "folder; put it at stanford_cars/cars_train/ (a nested cars_train/cars_train is flattened here), "
                "or the original archive at {dest}",
            ),
            FileSpec(
                "cars_test.tgz",
                (Source("http://ai.stanford.edu/~jkrause/car196/cars_test.tgz", note="offline since ~2023"),),
                ("cars_test",),
                extract=True,
                manual="Kaggle dataset jessicali9530/stanford-cars-dataset (login): its cars_test/cars_test "
                "folder; put it at stanford_cars/cars_test/, or the original archive at {dest}",
            ),
            _split("StanfordCars", "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"),
            FileSpec(
                "car_devkit.tgz",
                (Source("http://ai.stanford.edu/~jkrause/cars/car_devkit.tgz", note="offline since ~2023"),),
                ("devkit/cars_train_annos.mat",),
                extract=True,
                for_rebuild=True,
                manual="car_devkit.tgz (attached to pytorch/vision#7545, or the MaPLe authors' mirror); "
                "put it at {dest}",
            ),
            FileSpec(
                "cars_test_annos_withlabels.mat",
                (
                    Source(
                        "http://ai.stanford.edu/~jkrause/car196/cars_test_annos_withlabels.mat",
                        note="offline since ~2023",
                    ),
                ),
                ("cars_test_annos_withlabels.mat",),
                for_rebuild=True,
                manual="attached to pytorch/vision#7545; put it at {dest}",
            ),
        ),
        ("cars_train", "cars_test"),
        split_file="split_zhou_StanfordCars.json",
        image_folder="",
        convert=("flatten_cars",),
    ),
    DatasetSpec(
        "OxfordFlowers",
        "oxford_flowers",
        "oxford_flowers",
        (
            FileSpec(
                "102flowers.tgz",
                (
                    Source(f"{VGG}/flowers/102/102flowers.tgz"),
                    Source(f"{THOR}/flowers/102/102flowers.tgz", note="unverified host"),
                ),
                ("jpg",),
                md5="52808999861908f626f3c1f4e79d11fa",
                extract=True,
            ),
            FileSpec(
                "imagelabels.mat",
                (
                    Source(f"{VGG}/flowers/102/imagelabels.mat"),
                    Source(f"{THOR}/flowers/102/imagelabels.mat", note="unverified host"),
                ),
                ("imagelabels.mat",),
                md5="e0620be6f572b9609742df49c70aed4d",
                for_rebuild=True,
            ),
            FileSpec("cat_to_name.json", (Source(gdrive="1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0"),), ("cat_to_name.json",)),
            _split("OxfordFlowers", "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"),
        ),
        ("jpg",),
        split_file="split_zhou_OxfordFlowers.json",
        image_folder="jpg",
    ),
    DatasetSpec(
        "Food101",
        "food-101",
        "food101",
        (
            FileSpec(
                "food-101.tar.gz",
                (Source("http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz"),),
                ("images",),
                md5="85eeb15f3717b99a5da872d97d918f87",
                extract=True,
                take="food-101",
            ),
            _split("Food101", "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"),
        ),
        ("images",),
        split_file="split_zhou_Food101.json",
    ),
    DatasetSpec(
        "FGVCAircraft",
        "fgvc_aircraft",
        "fgvc_aircraft",
        (
            FileSpec(
                "fgvc-aircraft-2013b.tar.gz",
                (
                    Source(f"{VGG}/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz"),
                    Source(f"{THOR}/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz", note="unverified host"),
                ),
                ("images", "variants.txt"),
                extract=True,
                take="fgvc-aircraft-2013b/data",  # users keep data/ only and rename it fgvc_aircraft/
            ),
        ),
        ("images", "variants.txt", "images_variant_train.txt", "images_variant_val.txt", "images_variant_test.txt"),
    ),
    DatasetSpec(
        "SUN397",
        "sun397",
        "sun397",
        (
            FileSpec(
                "SUN397.tar.gz",
                (Source("http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz", note="dead in 2025-2026"),),
                ("SUN397",),
                md5="8ca2778205c41d23104230ba66911c7a",
                extract=True,
                manual="SUN397.tar.gz (37 GB; the Princeton and MIT hosts are dead, CoOp#90): from a mirror of "
                "the original archive (not Kaggle's train/test re-pack, whose paths differ from the split file); "
                "put it at {dest} (or extract it so that sun397/SUN397/a/abbey/ exists)",
            ),
            _split("SUN397", "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"),
            FileSpec(
                "Partitions.zip",
                (Source("http://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip"),),
                ("ClassName.txt",),
                extract=True,
                for_rebuild=True,
                manual="ClassName.txt, Training_01.txt, Testing_01.txt from a SUN397 mirror; put the zip at {dest}",
            ),
        ),
        ("SUN397",),
        split_file="split_zhou_SUN397.json",
        image_folder="SUN397",
        convert=("flatten_partitions",),
    ),
    DatasetSpec(
        "DescribableTextures",
        "dtd",
        "dtd",
        (
            FileSpec(
                "dtd-r1.0.1.tar.gz",
                (
                    Source(f"{VGG}/dtd/download/dtd-r1.0.1.tar.gz"),
                    Source(f"{THOR}/dtd/download/dtd-r1.0.1.tar.gz", note="unverified host"),
                ),
                ("images",),
                md5="fff73e5086ae6bdbea199a49dfb8a4c1",
                extract=True,
                take="dtd",
            ),
            _split("DescribableTextures", "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"),
        ),
        ("images",),
        split_file="split_zhou_DescribableTextures.json",
    ),
    DatasetSpec(
        "EuroSAT",
        "eurosat",
        "eurosat",
        (
            FileSpec(
                "EuroSAT.zip",
                (
                    Source("https://madm.dfki.de/files/sentinel/EuroSAT.zip", note="expired SSL certificate"),
                    Source(
                        "https://huggingface.co/datasets/torchgeo/eurosat/resolve/"
                        "c877bcd43f099cd0196738f714544e355477f3fd/EuroSAT.zip"
                    ),
                    Source(
                        "https://zenodo.org/records/7711810/files/EuroSAT_RGB.zip",
                        name="EuroSAT_RGB.zip",
                        take="EuroSAT_RGB",
                        dest="2750",
                        note="the author's Zenodo record (phelber/EuroSAT#13); file name unverified",
                    ),
                ),
                ("2750",),
                md5="c8fa014336c82ac7804f0398fcb19387",
                extract=True,
            ),
            _split("EuroSAT", "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"),
        ),
        ("2750",),
        split_file="split_zhou_EuroSAT.json",
        image_folder="2750",
    ),
    DatasetSpec(
        "UCF101",
        "ucf101",
        "ucf101",
        (
            FileSpec(
                "UCF-101-midframes.zip",
                (Source(gdrive="10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O"),),
                ("UCF-101-midframes",),
                extract=True,
            ),
            _split("UCF101", "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"),
        ),
        ("UCF-101-midframes",),
        split_file="split_zhou_UCF101.json",
        image_folder="UCF-101-midframes",
    ),
    DatasetSpec(
        "ImageNetV2",
        "imagenetv2",
        "imagenetv2",
        (
            FileSpec(
                "imagenetv2-matched-frequency.tar.gz",
                (
                    Source(
                        "https://s3-us-west-2.amazonaws.com/imagenetv2public/imagenetv2-matched-frequency.tar.gz",
                        note="403 since 2023",
                    ),
                    Source(
                        "https://huggingface.co/datasets/vaishaal/ImageNetV2/resolve/main/"
                        "imagenetv2-matched-frequency.tar.gz"
                    ),
                ),
                ("imagenetv2-matched-frequency-format-val",),
                extract=True,
            ),
        ),
        ("imagenetv2-matched-frequency-format-val", "classnames.txt"),
        image_folder="imagenetv2-matched-frequency-format-val",
        convert=("copy_classnames",),
    ),
    DatasetSpec(
        "ImageNetSketch",
        "imagenet-sketch",
        "imagenet_sketch",
        (
            FileSpec(
                "ImageNet-Sketch.zip",
                (
                    Source(
                        "https://huggingface.co/datasets/imagenet_sketch/resolve/main/data/ImageNet-Sketch.zip",
                        note="HF copy of the authors' archive (HaohanWang/ImageNet-Sketch#7); path unverified",
                    ),
                ),
                ("images",),
                extract=True,
                take="sketch",
                dest="images",
            ),
        ),
        ("images", "classnames.txt"),
        convert=("copy_classnames",),
    ),
    DatasetSpec(
        "ImageNetA",
        "imagenet-adversarial",
        "imagenet_a",
        (
            FileSpec(
                "imagenet-a.tar",
                (Source("https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar"),),
                ("imagenet-a",),
                extract=True,
            ),
        ),
        ("imagenet-a", "classnames.txt"),
        image_folder="imagenet-a",
        convert=("copy_classnames",),
    ),
    DatasetSpec(
        "ImageNetR",
        "imagenet-rendition",
        "imagenet_r",
        (
            FileSpec(
                "imagenet-r.tar",
                (Source("https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar"),),
                ("imagenet-r",),
                extract=True,
            ),
        ),
        ("imagenet-r", "classnames.txt"),
        image_folder="imagenet-r",
        convert=("copy_classnames",),
    ),
)


def _drive_zip(name: str, gdrive: str, top: str, provides: tuple[str, ...]) -> FileSpec:
    """A DG release zip on Google Drive whose single top folder ``top`` becomes the dataset folder."""
    return FileSpec(
        name,
        (Source(gdrive=gdrive),),
        provides,
        extract=True,
        take=top,
        manual=f"{name} from https://drive.google.com/file/d/{gdrive} (a browser gets past Drive's download "
        "quota page); put it at {dest}",
    )


DOMAINNET = "http://csr.bu.edu/ftp/visda/2019/multi-source"
DOMAINNET_PAGE = "http://ai.bu.edu/M3SDA/ (cleaned version)"
DOMAINNET_DOMAINS = ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")
# md5 of the cleaned release's files (see the module docstring for where they come from).
DOMAINNET_MD5 = {
    "clipart.zip": "cd0d8f2d77a4e181449b78ed62bccf1e",
    "infograph.zip": "720380b86f9e6ab4805bb38b6bd135f8",
    "painting.zip": "1ae32cdb4f98fe7ab5eb0a351768abfd",
    "quickdraw.zip": "bdc1b6f09f277da1a263389efe0c7a66",
    "real.zip": "dcc47055e8935767784b7162e7c7cca6",
    "sketch.zip": "658d8009644040ff7ce30bb2e820850f",
    "clipart_train.txt": "b4349693a7f9c05c53955725c47ed6cb",
    "clipart_test.txt": "f5ddbcfd657a3acf9d0f7da10db22565",
    "infograph_train.txt": "379b50054f4ac2018dca4f89421b92d9",
    "infograph_test.txt": "779626b50869edffe8ea6941c3755c71",
    "painting_train.txt": "7db0e7ca73ad9982f6e1f7f3ef372c0a",
    "painting_test.txt": "232b35dc53f26d414686ae579e38d9b5",
    "quickdraw_train.txt": "b732ced3939ac8efdd8c0a889dca56cc",
    "quickdraw_test.txt": "c1a828fdfe216fb109f1c0083a252c6f",
    "real_train.txt": "8ebf02c2075fadd564705f0dc7cd6291",
    "real_test.txt": "6098816791c3ebed543c71ffa11b9054",
    "sketch_train.txt": "1233bd18aa9a8a200bf4cecf1c34ef3e",
    "sketch_test.txt": "d8a222e4672cfd585298aa14d02ea441",
}


def _domainnet_files() -> tuple[FileSpec, ...]:
    """Each domain's zip (clipart and painting from groundtruth/) and its train/test lists (into splits/)."""
    files = []
    for d in DOMAINNET_DOMAINS:
        sub = "groundtruth/" if d in ("clipart", "painting") else ""
        manual = f"{d}.zip from {DOMAINNET_PAGE}; put it at {{dest}}"
        files.append(FileSpec(f"{d}.zip", (Source(f"{DOMAINNET}/{sub}{d}.zip"),), (d,),
                              md5=DOMAINNET_MD5[f"{d}.zip"], extract=True, manual=manual))  # fmt: skip
        for part in ("train", "test"):
            name = f"{d}_{part}.txt"
            files.append(FileSpec(name, (Source(f"{DOMAINNET}/domainnet/txt/{name}"),), (f"splits/{name}",),
                                  md5=DOMAINNET_MD5[name], dest=f"splits/{name}",
                                  manual=f"{name} from {DOMAINNET_PAGE}; put it at {{dest}}"))  # fmt: skip
    return tuple(files)


OFFICE_HOME_DOMAINS = ("art", "clipart", "product", "real_world")
VLCS_DOMAINS = ("CALTECH", "LABELME", "PASCAL", "SUN")
DG_SPECS: tuple[DatasetSpec, ...] = (
    DatasetSpec(
        "PACSFS",
        "pacs",
        "pacs",
        (_drive_zip("pacs.zip", "1m4X4fROCCXMO0lRLrr6Zz9Vb3974NWhE", "pacs", ("images", "splits")),),
        ("images", "splits"),
        group="dg",
    ),
    DatasetSpec(
        "OfficeHomeFS",
        "office_home",
        "office_home",
        (_drive_zip("office_home_dg.zip", "1gkbf_KaxoBws-GWT3XIPZ7BnkqbAxIFa", "office_home_dg", OFFICE_HOME_DOMAINS),),
        OFFICE_HOME_DOMAINS,
        group="dg",
    ),
    DatasetSpec(
        "VLCSFS",
        "vlcs",
        "vlcs",
        (_drive_zip("vlcs.zip", "1r0WL5DDqKfSPp9E3tRENwHaXNs1olLZd", "VLCS", VLCS_DOMAINS),),
        VLCS_DOMAINS,
        group="dg",
    ),
    DatasetSpec(
        "DomainNetFS", "domainnet", "domainnet", _domainnet_files(), (*DOMAINNET_DOMAINS, "splits"), group="dg"
    ),
)
DATASET_SPECS = DATASET_SPECS + DG_SPECS
GROUPS = {"coop": "the 15 datasets of CoOp/MMRL", "dg": "the 4 domain-generalisation datasets of MetaPrompt"}


def find_spec(name: str) -> DatasetSpec | None:
    """The dataset called ``name``: its DATASET.NAME, folder or config stem, case-insensitively."""
    key = name.lower().strip("/")
    for spec in DATASET_SPECS:
        if key in (spec.name.lower(), spec.folder.lower(), spec.config.lower()):
            return spec
    return None
