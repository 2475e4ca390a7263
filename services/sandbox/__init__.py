"""The code interpreter: kernels in a jail (jail.py, kernel.py), served on the bus."""
