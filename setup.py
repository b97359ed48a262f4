"""Install semisup-seg: the packages and the flat scripts, importable from anywhere."""
from setuptools import setup

setup(
    name="semisup-seg",
    version="0.1.0",
    description=(
        "Reproduction of French et al., 'Semi-supervised semantic segmentation needs strong, "
        "varied perturbations' (BMVC 2020)"
    ),
    python_requires=">=3.10",
    packages=["datapipe", "architectures", "regularizers", "evaluation"],
    py_modules=["train_seg_semisup", "toy2d", "patch_distances", "prepare_data", "cli_errors", "provenance"],
    install_requires=[
        "torch",
        "torchvision",
        "numpy",
        "opencv-python-headless",
        "scipy",
        "click",
        "pillow",
    ],
)
