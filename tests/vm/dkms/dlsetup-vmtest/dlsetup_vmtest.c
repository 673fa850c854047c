// SPDX-License-Identifier: GPL-2.0
/* dlsetup's VM tier: a module that does nothing but say it was loaded. */
#include <linux/module.h>
#include <linux/init.h>

static int __init dlsetup_vmtest_init(void)
{
	pr_info("dlsetup_vmtest: loaded\n");
	return 0;
}

static void __exit dlsetup_vmtest_exit(void)
{
	pr_info("dlsetup_vmtest: unloaded\n");
}

module_init(dlsetup_vmtest_init);
module_exit(dlsetup_vmtest_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("dlsetup VM tier test module");
