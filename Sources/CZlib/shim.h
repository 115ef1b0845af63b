// zlib, for reading and writing NumPy .npz archives (pytorch-fid's statistics files).
#include <zlib.h>
