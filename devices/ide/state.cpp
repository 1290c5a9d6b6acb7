// devices/ide/state.cpp — field tables of the IDE state.
#include "devices/ide/state.h"

namespace emu::devices::ide {

std::span<const FieldDesc> IdeDriveState::fields()
{
    using S = IdeDriveState;
    static const FieldDesc table[] = {
        field<&S::feature>("feature"),
        field<&S::nsector>("nsector"),
        field<&S::sector>("sector"),
        field<&S::lcyl>("lcyl"),
        field<&S::hcyl>("hcyl"),
        field<&S::hob_feature>("hob_feature"),
        field<&S::hob_nsector>("hob_nsector"),
        field<&S::hob_sector>("hob_sector"),
        field<&S::hob_lcyl>("hob_lcyl"),
        field<&S::hob_hcyl>("hob_hcyl"),
        field<&S::select>("select"),
        field<&S::status>("status"),
        field<&S::error>("error"),
        field<&S::irq_pending>("irq_pending"),
        field<&S::command>("command"),
        field<&S::op>("op"),
        field<&S::io_stopped>("io_stopped"),
        field<&S::lba>("lba"),
        field<&S::remaining>("remaining"),
        field<&S::chunk>("chunk"),
        field<&S::buf_pos>("buf_pos"),
        field<&S::buf_end>("buf_end"),
        field<&S::buf_fill>("buf_fill"),
        field<&S::drq_block>("drq_block"),
        field<&S::dma_pending>("dma_pending"),
        field<&S::dma_offset>("dma_offset"),
        field<&S::dma_left>("dma_left"),
        field<&S::dma_moved>("dma_moved"),
        field<&S::mult_sectors>("mult_sectors"),
        field<&S::cur_cylinders>("cur_cylinders"),
        field<&S::cur_heads>("cur_heads"),
        field<&S::cur_sectors>("cur_sectors"),
        field<&S::write_cache>("write_cache"),
        field<&S::power_mode>("power_mode"),
        field<&S::xfer_mode>("xfer_mode"),
        field<&S::sense_key>("sense_key"),
        field<&S::asc>("asc"),
        field<&S::ascq>("ascq"),
        field<&S::packet>("packet"),
        field<&S::byte_limit>("byte_limit"),
        field<&S::tray_open>("tray_open"),
        field<&S::locked>("locked"),
        field<&S::media_change>("media_change"),
        field<&S::media_event>("media_event"),
        field<&S::buffer>("buffer"),
    };
    return table;
}

std::span<const FieldDesc> IdeChannelState::fields()
{
    using S = IdeChannelState;
    static const FieldDesc table[] = {
        field<&S::unit>("unit"),
        field<&S::devctl>("devctl"),
        field<&S::bm_command>("bm_command"),
        field<&S::bm_status>("bm_status"),
        field<&S::bm_prd>("bm_prd"),
        field<&S::prd_table>("prd_table"),
        field<&S::prd_index>("prd_index"),
        field<&S::prd_offset>("prd_offset"),
        field<&S::prd_end>("prd_end"),
        field<&S::chunk_index>("chunk_index"),
        field<&S::chunk_offset>("chunk_offset"),
        field<&S::chunk_end>("chunk_end"),
        field<&S::drives>("drives", IdeDriveState::fields()),
    };
    return table;
}

} // namespace emu::devices::ide
