/* SPDX-License-Identifier: Apache-2.0 */
/* The writer's last step: the delta just written, read back through the reader's own path. */
#ifndef SP_VERIFY_H
#define SP_VERIFY_H

#include "sparse/sparse.h"

/* Opens delta file file (to become dir/delta.sparse) over base_dir and decodes every chunk,
 * which checks it against its hash; with ft_dir (a lossless delta), every chunk that is not
 * LOSSY is also compared byte for byte with the file of that name in ft_dir. */
int sp_verify_written(const char *dir, const char *file, const char *base_dir, const char *ft_dir,
		      struct sp_err *err);

#endif
