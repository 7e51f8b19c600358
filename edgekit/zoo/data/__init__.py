"""Data files shipped with the zoo (a package only so that wheels carry them).

- ``imagenet_classes.txt``: the 1000 ImageNet-1k class names in index order, one per line (the
  list torchvision publishes with its ImageNet weights); read it with
  :func:`edgekit.zoo.mobilenet.imagenet_labels`.
"""
